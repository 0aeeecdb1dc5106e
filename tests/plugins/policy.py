"""A strfry write-policy plugin for tests, steered by each event's content:

``spam`` is rejected, ``shadow`` shadow-rejected, ``hang`` never answered, ``exit`` makes
the plugin exit without answering, ``whoami`` is rejected with the request's source fields
as the message, ``noprefix`` is rejected with a message lacking a NIP-01 prefix; anything
else is accepted. Answers go out in the order the requests came in.
"""

import json
import sys
from typing import Any


def answer(request: dict[str, Any]) -> dict[str, Any] | None:
    event = request["event"]
    content = event["content"]
    if content == "exit":
        sys.exit(3)
    if content == "hang":
        return None
    reply: dict[str, Any] = {"id": event["id"], "action": "accept", "msg": ""}
    if content == "spam":
        reply.update(action="reject", msg="blocked: no spam here")
    elif content == "shadow":
        reply.update(action="shadowReject")
    elif content == "noprefix":
        reply.update(action="reject", msg="not today")
    elif content == "whoami":
        fields = (
            request["type"],
            request["sourceType"],
            request["sourceInfo"],
            request.get("authed", "-"),
        )
        received = isinstance(request["receivedAt"], int)
        reply.update(action="reject", msg=f"restricted: {' '.join(fields)} {received}")
    return reply


for line in sys.stdin:
    reply = answer(json.loads(line))
    if reply is not None:
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
