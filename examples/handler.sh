#!/bin/sh
# An example handler for `scimbridge agent` (POSIX sh; uses jq when it is installed).
#
#   scimbridge agent --url https://scim.example.com --token "$AGENT_TOKEN" \
#       --exec ./examples/handler.sh --kinds create_account,remove,deactivate
#
# The contract: the agent runs this program once per claimed task.
#
#   stdin   the task JSON, exactly as `POST /api/v1/tasks/claim` returned it:
#           {"id", "kind", "subject": {"id", "user_name"}, "title", "instructions": [...],
#            "changes": [{"field","from","to"}], "base", "target": {account}, 
#            "completion_fields": [{"name","label","required","choices"}], "lease_id", ...}
#   env     SCIMBRIDGE_TASK_ID, SCIMBRIDGE_TASK_KIND, SCIMBRIDGE_LEASE_ID
#           (SCIMBRIDGE_TOKEN is removed: a handler works the app, not the queue)
#   exit 0  done. stdout is empty, or one JSON object:
#             {"fields": {"<completion field>": "<value>"}, "note": "<free text>",
#              "attachments": [{"filename", "content_type", "data": "<base64>"}]}
#           every required completion field must be there (e.g. seat_freed=yes|no|unknown
#           for remove and deactivate), or the task is recorded as failed, saying why.
#   exit 3  not applicable: the app already is as the task wants it (the user to remove
#           never had an account). The note is stdout's "note" (JSON), else stdout, else
#           stderr.
#   other   failed (any other exit code, a crash, a timeout, stdout that is not the JSON
#           above). The last 2 KB of stderr become the note: write your diagnostics there.
#
# The agent extends the lease while this runs, so take as long as the work needs (up to
# --timeout, 900 s by default). On shutdown the agent waits --grace-seconds for it, then
# sends SIGTERM to its whole process group and releases the task. A task can be handed
# out again if its result could not be recorded, so make the work safe to repeat.
set -eu

task=$(cat)                       # the whole task JSON
kind=${SCIMBRIDGE_TASK_KIND:?}    # also in the JSON; the env is handy without jq
id=${SCIMBRIDGE_TASK_ID:?}

if command -v jq >/dev/null 2>&1; then
  user=$(printf '%s' "$task" | jq -r '.subject.user_name')
  email=$(printf '%s' "$task" | jq -r '.target.email // .base.email // .subject.user_name')
  role=$(printf '%s' "$task" | jq -r '.target.role // empty')
else
  # Without jq, work from the environment only and say so in the note.
  user="(user of task $id; install jq to read the task JSON)"
  email=$user
  role=""
fi

# Diagnostics go to stderr: the agent keeps its tail as the note of a failed task.
echo "task $id: $kind for $user" >&2

# Emits the completion JSON: $1 = note, then NAME VALUE pairs of completion fields.
report() {
  note=$1; shift
  if command -v jq >/dev/null 2>&1; then
    fields='{}'
    while [ $# -ge 2 ]; do
      fields=$(printf '%s' "$fields" | jq -c --arg k "$1" --arg v "$2" '. + {($k): $v}')
      shift 2
    done
    jq -n -c --arg note "$note" --argjson fields "$fields" '{fields: $fields, note: $note}'
  else
    # Values here are plain words and numbers: no JSON escaping needed.
    out='{"fields": {'
    sep=''
    while [ $# -ge 2 ]; do
      out="$out$sep\"$1\": \"$2\""; sep=', '
      shift 2
    done
    printf '%s}, "note": "%s"}\n' "$out" "example handler: task $id ($kind) worked without jq"
  fi
}

# Replace with a real look-up in the app (its admin API, a browser automation, ...).
app_has_account() {
  case $1 in
    ghost*) return 1 ;;           # demo: users named ghost* never had an account
    *) return 0 ;;
  esac
}

case $kind in
  create_account)
    # ... add the user in the app here ...
    report "created $email as ${role:-the default role} (example handler)" app_account_id "demo-$id"
    ;;
  remove|deactivate)
    if ! app_has_account "$user"; then
      # Nothing to do: not_applicable, with the reason as the note.
      echo "{\"note\": \"no account for this user in the app; nothing to $kind\"}"
      exit 3
    fi
    # ... remove or deactivate the user here, then say whether the seat was freed ...
    report "${kind}d $email (example handler)" seat_freed yes ownership_moved_to "it-admin"
    ;;
  *)
    # update_attributes, change_role, reactivate: print what a person would do.
    printf '%s' "$task" | { command -v jq >/dev/null 2>&1 && jq -r '.instructions[]' >&2 || cat >/dev/null; }
    report "applied $kind (example handler)"
    ;;
esac
