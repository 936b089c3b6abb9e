"""The loopback server fixture answers as registered: fixed replies, sequences, 404 for unknown paths."""

from __future__ import annotations

import requests

from tests.harvest.conftest import Reply


def test_route_sequence_repeats_last_reply_and_counts_hits(web) -> None:
    url = web.route("/flaky", responses=[Reply(503, b"busy", {"Retry-After": "0"}), Reply(200, b"ok")])
    codes = [requests.get(url, timeout=5).status_code for _ in range(3)]
    assert codes == [503, 200, 200]
    assert web.hits("/flaky") == 3


def test_unknown_path_is_404(web) -> None:
    assert requests.get(web.url("/nothing"), timeout=5).status_code == 404
