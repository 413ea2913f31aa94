"""The chaos harness (tests/netns/chaos.py) for a short run: every kind
of round once, and the kinds that interact most (kills, cuts, loss) a
second time, in an order a fixed seed shuffles, traffic both ways
throughout; every kind must have run (none became another), and the
checker must find no nonce used twice, no replay accepted, no SA lost, a
complete capture, and the traffic flowing again after every round and at
the end. The pair runs `inbound_grace: 0`, as under a host (its takeovers
of a silent peer's inbound SAs wait for a fence or the peer; a kill at a
low rate is fenced); `scripts/chaos 500` is the long run, whose seed
chooses the grace."""

import random

from chaos import ACTIONS, Chaos


def test_chaos_rounds_reuse_no_nonce_accept_no_replay_lose_no_sa(topo, espgate, tmp_path, capsys):
    plan = ACTIONS + ["kill", "cut", "loss", "reorder"]
    random.Random(20261127).shuffle(plan)
    chaos = Chaos(topo, espgate, tmp_path, seed=20261127, grace=0)
    totals, problems = chaos.run(len(plan), plan)
    with capsys.disabled():
        print("\nchaos, short run: " + ", ".join(f"{k}: {v}" for k, v in totals.items()))
    assert not chaos.missing(), f"kinds of round that never ran: {chaos.missing()}"
    assert not problems, problems
