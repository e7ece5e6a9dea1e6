# A warm task's command on the worker: hand the task to the worker's warm host, print the host's answer.
#
#   exec bash pwq_call.sh FOLDER START      (in the task's sandbox; shipped as pwq_call.sh)
#
# FOLDER is the warm host's folder in the worker's workspace, where it keeps its port and a token
# (parsl_wq.worker.supervisor); PWQ_CALL, in the task's environment, is its WarmCall as one line of JSON
# (parsl_wq.protocol.warm).
# 1. Connect to the port; the host greets with the token, which only this user can read in FOLDER.
# 2. Send the sandbox and the call.
# 3. Print the host's answer, one line of JSON: the manager reads it in the task's output. A host that dies
#    meanwhile answers nothing, and the manager reports a lost warm process.
# Where no host answers as it should (or bash has no /dev/tcp), START, the shell steps that start one
# (ending in python pwq_worker.pyz warm FOLDER), run in /bin/sh as the task's own shell would have run them,
# with the task's stderr and without the SHLVL that bash set where there was none.
# bash only: this is the whole cost of a warm call on the worker.
start=$2
exec 4>&2 2>/dev/null
no_host() {
    exec 3>&- 2>&4 4>&-
    [ "$SHLVL" = 1 ] && unset SHLVL
    exec /bin/sh -c "$start"
}
read -r port token < "$1/port" || no_host
exec 3<>"/dev/tcp/127.0.0.1/$port" || no_host
IFS= read -r -t 10 greeting <&3 && [ "$greeting" = "$token" ] || no_host
printf '%s\n%s\n' "$PWD" "$PWQ_CALL" >&3
IFS= read -r answer <&3
printf '%s\n' "$answer"
