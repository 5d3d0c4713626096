#!/bin/bash
# test-ctl-agent: on a terminal, fuseloopctl brings its own text authentication agent (pkttyagent,
# found in PATH), like systemctl, so that an action that polkit allows only after the user has
# authenticated (AUTH_SELF) asks for the password on that terminal. A test user with a password
# runs "fuseloopctl map" on a pseudo-terminal of its own (the controlling terminal of the command,
# and its stdin, stdout and stderr): with the right password the mapping is made, with the user as
# its owner; with a wrong one polkit refuses (AccessDenied) and nothing is made. Without a terminal
# on stdin, or with --no-ask-password, no agent is started and no password is asked for: the call
# fails with InteractiveAuthorizationRequired. The agent never outlives the command.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

ACTION=org.proxmox.fuseloop.map
[ -x /usr/bin/pkttyagent ] || skip "pkttyagent is not installed"
[ -u /usr/lib/polkit-1/polkit-agent-helper-1 ] || skip "no setuid polkit-agent-helper-1"
command -v chpasswd >/dev/null || skip "chpasswd is not installed"
"$PYTHON" -c 'import pty, termios' 2>/dev/null || skip "$PYTHON lacks the pty or termios module"

make_test_user U
UID_U=$(id -u "$U")
PASSWORD=pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s:%s\n' "$U" "$PASSWORD" | chpasswd || fail "chpasswd for $U failed"
make_data_file "$FL_TMP/data.img" 2

# A pkttyagent ahead of the real one in the PATH that fuseloopctl gets: it records how it was
# started and by whom, then becomes the real agent (same pid).
mkdir -m 0755 "$FL_TMP/bin"
AGENT_LOG=$FL_TMP/agent-starts
install -m 0666 /dev/null "$AGENT_LOG"
cat >"$FL_TMP/bin/pkttyagent" <<EOF
#!/bin/sh
echo "ppid=\$PPID args=\$*" >>"$AGENT_LOG"
exec /usr/bin/pkttyagent "\$@"
EOF
chmod 0755 "$FL_TMP/bin/pkttyagent"

# The driver of the pseudo-terminal: runs a command on a new one and answers each password prompt.
cat >"$FL_TMP/pty-run.py" <<'EOF'
"""pty-run.py TRANSCRIPT PASSWORD CMD...: runs CMD on a new pseudo-terminal, which is its
controlling terminal and its stdin, stdout and stderr. Answers each "Password:" prompt (3 at most)
with PASSWORD ("-": never answer), once the agent has turned echo off (polkit's text agent prints
the prompt first, then flushes the input as it turns echo off). Waits, 120 s at most, until CMD
has exited and no process has the terminal open any more (5 s at most after CMD exited). Writes what the terminal showed (colour
codes removed) to TRANSCRIPT, prints "prompts=N hangup=yes|no" and exits with CMD's status (124
if it had to be killed)."""
import os
import pty
import re
import select
import signal
import sys
import termios
import time

transcript, password, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)

deadline = time.monotonic() + 120
out = b""
seen = 0            # prompts seen
answered = 0        # prompts answered
status = None
hangup = False
while not hangup and time.monotonic() < deadline:
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:     # EIO: the last process that had the terminal open closed it
            data = b""
        if not data:
            hangup = True
        out += data
    seen = out.count(b"Password:")
    if answered < seen and answered < 3 and password != "-":
        try:
            echo = termios.tcgetattr(fd)[3] & termios.ECHO
        except termios.error:
            echo = True
        if not echo:
            os.write(fd, password.encode() + b"\n")
            answered += 1
    if status is None:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p:
            status = os.waitstatus_to_exitcode(st)
            # What still has the terminal open is left over: 5 s for it to close.
            deadline = min(deadline, time.monotonic() + 5)

while status is None and time.monotonic() < deadline:
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        status = os.waitstatus_to_exitcode(st)
    else:
        time.sleep(0.05)
if status is None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    status = 124
text = out.decode(errors="replace").replace("\r\n", "\n")
text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
with open(transcript, "w") as f:
    f.write(text)
print("prompts=%d hangup=%s" % (seen, "yes" if hangup else "no"))
sys.exit(status)
EOF

# on_pty NAME PASSWORD|- ARGS...: runs "fuseloopctl ARGS..." as U on a pseudo-terminal of its own
# (see pty-run.py), with our pkttyagent first in PATH, through the command in PTY_WRAP if set.
# Leaves the exit status in PTY_RC, the transcript in PTY_OUT and the driver's
# "prompts=N hangup=..." in PTY_INFO, and logs them. Fails if the terminal stayed open or an agent
# of U still runs after fuseloopctl exited.
PTY_WRAP=()
on_pty() {
        local name=$1 pw=$2

        shift 2
        PTY_RC=0
        PTY_INFO=$("$PYTHON" "$FL_TMP/pty-run.py" "$FL_TMP/$name.transcript" "$pw" \
                runuser -u "$U" -- env DBUS_SYSTEM_BUS_ADDRESS="$DBUS_SYSTEM_BUS_ADDRESS" LC_ALL=C \
                PATH="$FL_TMP/bin:/usr/bin:/bin" "${PTY_WRAP[@]}" "$FUSELOOPCTL" "$@" 8>&-) || PTY_RC=$?
        PTY_OUT=$(cat "$FL_TMP/$name.transcript")
        log "fuseloopctl $* as $U on a terminal: status $PTY_RC, $PTY_INFO, the terminal showed:"$'\n'"$PTY_OUT"
        assert_contains "$PTY_INFO" "hangup=yes" "pty-run.py ($name: the terminal was closed)"
        ! pgrep -u "$U" -x pkttyagent >/dev/null ||
                fail "a pkttyagent of $U outlived fuseloopctl ($name): $(pgrep -a -u "$U" -x pkttyagent)"
}

agent_starts() { wc -l <"$AGENT_LOG"; }

# polkit_asks USER ACTION: polkitd lets USER do ACTION only after authentication (pkcheck, with
# no agent, exits with 2).
polkit_asks() {
        local rc=0

        polkit_allows "$@" || rc=$?
        [ "$rc" -eq 2 ]
}

! polkit_asks "$U" "$ACTION" || fail "polkit asks $U for a password for $ACTION before our rule"
add_polkit_rule RULE <<EOF
polkit.addRule(function(action, subject) {
        if (action.id == "$ACTION" && subject.user == "$U")
                return polkit.Result.AUTH_SELF;
        return polkit.Result.NOT_HANDLED;
});
EOF
command -v pkcheck >/dev/null || skip "pkcheck is not installed"
wait_for 30 "polkitd to ask $U to authenticate for $ACTION" polkit_asks "$U" "$ACTION"
start_daemon

step "map on a terminal: the agent asks for the password, the mapping is made"
on_pty right "$PASSWORD" map right "$FL_TMP/data.img"
assert_eq 0 "$PTY_RC" "status of fuseloopctl map with the right password ($PTY_OUT)"
assert_contains "$PTY_OUT" "AUTHENTICATING FOR $ACTION" "terminal"
assert_contains "$PTY_OUT" "Password:" "terminal"
assert_contains "$PTY_OUT" "AUTHENTICATION COMPLETE" "terminal"
[[ $PTY_OUT != *"$PASSWORD"* ]] || fail "the terminal echoed the password"
DEV=$(grep -E '^/dev/loop[0-9]+$' <<<"$PTY_OUT" | tail -n 1) || fail "no device in: $PTY_OUT"
assert_eq "$(sha256_of "$FL_TMP/data.img")" "$(sha256_of "$DEV")" "sha256 of $DEV"
assert_eq "$UID_U" "$(get_prop right OwnerUID)" "OwnerUID of 'right'"
assert_eq 1 "$(agent_starts)" "agents started"
STARTED=$(cat "$AGENT_LOG")
log "the agent was started as: $STARTED"
assert_match '^ppid=([0-9]+) args=--notify-fd [0-9]+ --process ([0-9]+)( --fallback)?$' "$STARTED" \
        "pkttyagent's arguments"
[[ $STARTED =~ ^ppid=([0-9]+).*--process\ ([0-9]+) ]]
assert_eq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "--process (must be fuseloopctl, the agent's parent)"

step "unmap on a terminal: the owner needs no password"
on_pty unmap - unmap right
assert_eq 0 "$PTY_RC" "status of fuseloopctl unmap of the user's own mapping ($PTY_OUT)"
assert_contains "$PTY_INFO" "prompts=0" "pty-run.py (unmap)"
assert_nothing_left right
assert_eq 2 "$(agent_starts)" "agents started"

step "a wrong password: AccessDenied, nothing made"
on_pty wrong "not-$PASSWORD" map wrong "$FL_TMP/data.img"
assert_eq 4 "$PTY_RC" "status of fuseloopctl map with a wrong password (4: access denied)"
assert_contains "$PTY_OUT" "AUTHENTICATING FOR $ACTION" "terminal"
assert_contains "$PTY_OUT" "AUTHENTICATION FAILED" "terminal"
# The daemon's AccessDenied message for a refusal (not a challenge).
assert_contains "$PTY_OUT" "failed to map 'wrong': Permission denied: uid $UID_U may not" "terminal"
grep -qF "polkit does not allow uid $UID_U to map" "$FL_DAEMON_LOG" ||
        fail "the daemon did not log the refusal of uid $UID_U"
assert_nothing_left wrong
assert_eq 3 "$(agent_starts)" "agents started"

step "--no-ask-password on a terminal: no agent, no prompt, InteractiveAuthorizationRequired"
on_pty noask - --no-ask-password map noask "$FL_TMP/data.img"
assert_eq 4 "$PTY_RC" "status of fuseloopctl --no-ask-password map (4: access denied)"
assert_contains "$PTY_INFO" "prompts=0" "pty-run.py (--no-ask-password)"
assert_no_match 'AUTHENTICATING' "$PTY_OUT" "terminal"
# The daemon's InteractiveAuthorizationRequired message.
assert_contains "$PTY_OUT" "Authentication is required to map" "terminal"
assert_contains "$PTY_OUT" "does not allow interactive authorization" "terminal"
assert_nothing_left noask
assert_eq 3 "$(agent_starts)" "agents started (none for --no-ask-password)"

step "stdin not a terminal (stdout and stderr are): no agent, InteractiveAuthorizationRequired"
# shellcheck disable=SC2016 # expanded by that sh
PTY_WRAP=(sh -c 'exec "$0" "$@" </dev/null')
on_pty nostdin - map nostdin "$FL_TMP/data.img"
PTY_WRAP=()
assert_eq 4 "$PTY_RC" "status of fuseloopctl map with stdin not a terminal (4: access denied)"
assert_contains "$PTY_INFO" "prompts=0" "pty-run.py (stdin not a terminal)"
assert_contains "$PTY_OUT" "does not allow interactive authorization" "terminal"
assert_nothing_left nostdin
assert_eq 3 "$(agent_starts)" "agents started (none without a terminal on stdin)"

step "cleanup"
assert_nothing_mapped
