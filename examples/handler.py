#!/usr/bin/env python3
"""An example handler for `scimbridge agent`, in Python (standard library only).

    scimbridge agent --url https://scim.example.com --token "$AGENT_TOKEN" \
        --exec ./examples/handler.py --concurrency 4

The contract (see examples/handler.sh and README.md for the whole of it):
- stdin: the task JSON as claimed; env SCIMBRIDGE_TASK_ID, SCIMBRIDGE_TASK_KIND,
  SCIMBRIDGE_LEASE_ID.
- exit 0 with {"fields": {...}, "note": "..."} (or nothing) on stdout: done.
- exit 3: not applicable (the app already is as the task wants it); note from stdout.
- anything else: failed; the last 2 KB of stderr become the note. An uncaught
  exception's traceback lands there, which is what the next person needs.
"""

import json
import sys

NOT_APPLICABLE = 3


def app_has_account(user_name: str) -> bool:
    """Replace with a look-up in the app. Demo: users named ghost* have no account."""
    return not user_name.startswith("ghost")


def main() -> int:
    task = json.load(sys.stdin)
    kind = task["kind"]
    user = task["subject"]["user_name"]
    target = task.get("target") or {}
    print(f"task {task['id']}: {kind} for {user}", file=sys.stderr)

    if kind == "create_account":
        # ... add the user in the app here ...
        out = {
            "fields": {"app_account_id": f"demo-{task['id']}"},
            "note": f"created {target.get('email', user)} as {target.get('role', 'the default role')}",
        }
    elif kind in ("remove", "deactivate"):
        if not app_has_account(user):
            print(json.dumps({"note": f"no account for {user} in the app; nothing to do"}))
            return NOT_APPLICABLE
        # ... remove or deactivate here; say whether the seat (licence) was freed ...
        out = {"fields": {"seat_freed": "yes"}, "note": f"{kind} done for {user}"}
    else:
        for n, step in enumerate(task.get("instructions", []), 1):
            print(f"{n}. {step}", file=sys.stderr)
        out = {"note": f"applied {kind} (example handler)"}

    # Every required completion field must be present, or the agent records a failure.
    missing = [f["name"] for f in task.get("completion_fields", []) if f.get("required") and f["name"] not in out.get("fields", {})]
    if missing:
        print(f"cannot complete: no value for {', '.join(missing)}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
