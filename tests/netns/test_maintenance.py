"""Planned maintenance on real hosts (issue 17): each node of the pair
drained (`espgate drain`) under traffic both ways, restarted and failed
back, as `scripts/maintenance-bench` does over many cycles. Every SA moves
exactly: no sequence number skipped or used twice, no fresh packet refused
as a replay, and few datagrams lost (the figures are printed; the bound
asserted is loose, a check that the SAs moved without a gap, not a
timing)."""

import pytest
from maintenance_bench import cycles

#: Datagrams a host may lose in one drain-and-return cycle at 1000/s
#: before the test calls it a gap (the bench measures the real figure).
LOOSE = 100


@pytest.mark.parametrize("keep_state", [False, True], ids=["no-state", "state-dir"])
def test_drain_and_return_of_each_node_moves_every_sa_exactly(topo, espgate, tmp_path, capsys, keep_state):
    lines = []
    r = cycles(topo, espgate, tmp_path, 2, keep_state, report=lines.append)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert r["reused"] == 0, "an (SPI, seq) pair was used twice"
    assert r["frames"] > 1000, "the capture holds too little ESP to prove anything"
    assert r["refused_r"] == 0, "r refused packets as replays"
    for name, l1, l2, _ in r["rows"]:
        assert l1 <= LOOSE and l2 <= LOOSE, f"drain of {name}: h1 lost {l1}, h2 lost {l2}"
    # Each cycle moves each of the drained node's SAs to the peer and
    # back: four moves on the wire, a's outbound SA and b's.
    assert len(r["moves"]) == 4, r["moves"]
    if keep_state:
        # The return steps past the marks the state directory wrote ahead
        # (docs/mirror-protocol.md, "Drain"): the drains themselves are
        # exact.
        drains = [m for k, m in enumerate(r["moves"]) if k % 2 == 0]
        assert all(j == 0 for _, _, _, j in drains), r["moves"]
    else:
        assert all(j == 0 for _, _, _, j in r["moves"]), r["moves"]
        assert not r["gaps"], f"numbers skipped: {r['gaps']}"
        assert r["refused"] == 0, "fresh packets refused as replays"
