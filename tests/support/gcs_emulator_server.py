"""Run ``gcp-storage-emulator`` with the one JSON API call it lacks: ``objects.move`` (``.../moveTo/o/...``).

Usage: ``python gcs_emulator_server.py start --host 127.0.0.1 --port P --in-memory --default-bucket B``
(the emulator's own command line, unchanged).

Why: gcsfs implements ``mv`` with the server-side ``moveTo`` call that real GCS offers. The emulator answers
it with 501, which gcsfs treats as retriable: six retries with back-off (~34 s) before it falls back to
copy + delete. Every atomic write in ``rfm_data.io`` ends in a move, so without this route each one would
stall for half a minute. The added route behaves as GCS does for a same-bucket move: the destination
object appears with the source's bytes and metadata, the source is gone, and the response is the new
object resource. Only the server gains a call; the client code under test is untouched.
"""

from __future__ import annotations

import sys
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.settings import API_ENDPOINT

MOVE_ROUTE = (
    rf"^{API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)"
    r"/moveTo/o/(?P<dest_object_id>.*[^/]+)$"
)


def move(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    bucket = request.params["bucket_name"]
    source = request.params["object_id"]
    try:
        moved = objects._copy(request.base_url, storage, bucket, source, bucket, request.params["dest_object_id"])
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    storage.delete_file(bucket, source)
    response.json(moved)


def install_move_route() -> None:
    # The generic object route would otherwise swallow ".../o/<src>/moveTo/o/<dst>" as one object name, so
    # the move route goes first. The server reads the module-level table on every request.
    server.HANDLERS = ((MOVE_ROUTE, {server.POST: move}), *server.HANDLERS)


if __name__ == "__main__":
    install_move_route()
    main(sys.argv[1:])
