"""The chaos harness (tests/netns/chaos.py) for a short run: every kind
of fault twice, in an order a fixed seed shuffles, traffic both ways
throughout; the checker must find no nonce used twice, no replay
accepted, no SA lost. `scripts/chaos 200` is the long run."""

import random

from chaos import ACTIONS, Chaos


def test_chaos_rounds_reuse_no_nonce_accept_no_replay_lose_no_sa(topo, espgate, tmp_path, capsys):
    plan = ACTIONS * 2
    random.Random(20261127).shuffle(plan)
    totals, reused, dups, lost, flowing = Chaos(topo, espgate, tmp_path, seed=20261127).run(len(plan), plan)
    with capsys.disabled():
        print("\nchaos, short run: " + ", ".join(f"{k}: {v}" for k, v in totals.items()))
    assert totals["rounds"] >= 10
    assert not reused, f"nonces used twice: {reused[:10]}"
    assert totals["ESP frames replayed"] > 0 and totals["mirror frames reordered"] > 0
    assert dups == 0, f"{dups} replayed datagrams reached a host"
    assert not lost, f"SAs not on exactly one node: {lost}"
    assert all(v > 0.5 for v in flowing.values()), flowing
