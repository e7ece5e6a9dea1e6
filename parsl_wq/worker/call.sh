# A warm task's call to the worker's warm host, sourced by the task's own shell (shipped as pwq_call.sh):
#
#   pwq_folder=FOLDER; . ./pwq_call.sh; START exec "$PY" pwq_worker.pyz warm FOLDER
#
# FOLDER is the warm host's folder in the worker's workspace (mode 0700). Its file `door` holds
# "PID CALLS BLOCK DOOR TOKEN": the supervisor's pid and three of its descriptors, which this user alone
# (and root) may open through /proc/PID/fd (parsl_wq.worker.supervisor). PWQ_CALL, in the task's
# environment, is its WarmCall as one line of JSON (parsl_wq.protocol.warm).
# 1. Check that the door is the supervisor's: its descriptor DOOR reads the same TOKEN (a process that took
#    the pid of a dead supervisor has no such descriptor).
# 2. Write the call and the task's TMPDIR to pwq_call in the sandbox; open the pipe BLOCK, which nobody writes to, and the task's
#    output once more as descriptor 4 (descriptor 1 is elsewhere while a command's output is redirected);
#    send "PID 4 SANDBOX" on the pipe CALLS.
# 3. Wait on BLOCK. The host writes its answer, one line of JSON, to descriptor 4, the task's output (the
#    manager reads it there), or to pwq_answer where it cannot, and sends SIGUSR1: exit. If the supervisor
#    ends first, BLOCK ends: no answer, and the manager reports a lost warm process.
# Where no door answers, return: the task's shell goes on with START, which starts a host and makes the call
# from Python (parsl_wq.worker.caller).
# Shell builtins only: the task's shell makes the call without starting a program.
{
    read -r pwq_pid pwq_calls pwq_block pwq_door pwq_token < "$pwq_folder/door" &&
        read -r _ _ _ _ pwq_check < "/proc/$pwq_pid/fd/$pwq_door" &&
        [ "$pwq_check" = "$pwq_token" ] && [ ${#PWD} -lt 4000 ] &&
        printf '%s\n%s\n' "$PWQ_CALL" "$TMPDIR" > pwq_call &&
        command exec 3< "/proc/$pwq_pid/fd/$pwq_block" 4>&1
} 2>/dev/null && {
    trap '[ -f pwq_answer ] && IFS= read -r pwq_answer < pwq_answer && printf "%s\n" "$pwq_answer"; exit 0' USR1
    if printf '%s 4 %s\n' "$$" "$PWD" 2>/dev/null > "/proc/$pwq_pid/fd/$pwq_calls"; then
        read -r _ <&3
        exit 0
    fi
    trap - USR1
    exec 3<&- 4>&-
}
