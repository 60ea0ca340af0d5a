package main

import (
	"encoding/json"
	"strings"
	"testing"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func TestMembersPromoteRemove(t *testing.T) {
	f := newFakeKVD(t)
	f.setSecret("s3cret")
	ep := "--endpoints=" + f.addr

	// Without the secret, or with a wrong one: exit 7, nothing changes, and
	// the wrong secret is not echoed.
	out, errOut, code := runKvctl(t, "", ep, "members", "promote", "4")
	if code != exitPermissionDenied || out != "" {
		t.Errorf("promote without --join-secret: code %d, stdout %q; want %d", code, out, exitPermissionDenied)
	}
	if !strings.Contains(errOut, "Error: promote member 4: permission_denied: wrong or missing join secret") ||
		!strings.Contains(errOut, "(no --join-secret or KVCTL_JOIN_SECRET given)") {
		t.Errorf("stderr %q", errOut)
	}
	_, errOut, code = runKvctl(t, "", ep, "members", "promote", "4", "--join-secret", "guessed-wrong")
	if code != exitPermissionDenied || strings.Contains(errOut, "guessed-wrong") || strings.Contains(errOut, "no --join-secret") {
		t.Errorf("promote with a wrong secret: code %d, stderr %q", code, errOut)
	}
	if r := f.roles()[4]; r != kvdv1.Role_ROLE_OBSERVER {
		t.Fatalf("a denied promote changed member 4 to %v", r)
	}

	out, errOut, code = runKvctl(t, "", ep, "members", "promote", "4", "--join-secret", "s3cret")
	if code != 0 || out != "promoted member 4 to voter\n" {
		t.Fatalf("promote: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if r := f.roles()[4]; r != kvdv1.Role_ROLE_VOTER {
		t.Errorf("member 4 is %v after promote, want a voter", r)
	}

	// The secret from the environment; JSON output.
	t.Setenv("KVCTL_JOIN_SECRET", "s3cret")
	out, errOut, code = runKvctl(t, "", ep, "members", "promote", "4", "-o", "json")
	if code != 0 || strings.Join(strings.Fields(out), " ") != `{ "id": 4, "role": "voter" }` {
		t.Errorf("promote -o json: code %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Refused: exit 1 with the server's reason, not "compare failed" (3).
	out, errOut, code = runKvctl(t, "", ep, "members", "remove", "2")
	if code != exitGeneric || out != "" {
		t.Errorf("remove of a needed voter: code %d, stdout %q; want %d", code, out, exitGeneric)
	}
	if want := "Error: remove member 2: refused: membership: change would break the quorum: without voter 2"; !strings.HasPrefix(errOut, want) {
		t.Errorf("stderr %q, want it to start with %q", errOut, want)
	}

	// Not a member: exit 2, like a missing key.
	for _, sub := range []string{"promote", "remove"} {
		_, errOut, code = runKvctl(t, "", ep, "members", sub, "99")
		if code != exitNotFound || !strings.Contains(errOut, sub+" member 99: no such member: membership: not a member: replica 99") {
			t.Errorf("%s 99: code %d, stderr %q; want %d", sub, code, errOut, exitNotFound)
		}
	}
	if len(f.roles()) != 3 {
		t.Errorf("membership changed: %v", f.roles())
	}
}

func TestMembersRemove(t *testing.T) {
	f := newFakeKVD(t)
	out, errOut, code := runKvctl(t, "", "--endpoints", f.addr, "members", "remove", "4")
	if code != 0 || out != "removed member 4\n" {
		t.Fatalf("remove: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, ok := f.roles()[4]; ok {
		t.Error("member 4 still listed after remove")
	}
	out, _, _ = runKvctl(t, "", "--endpoints", f.addr, "-o", "json", "members")
	var members []memberJSON
	if err := json.Unmarshal([]byte(out), &members); err != nil || len(members) != 2 {
		t.Errorf("members after remove: %v\n%s", err, out)
	}
	// JSON confirmation, options after the ID.
	f2 := newFakeKVD(t)
	out, errOut, code = runKvctl(t, "", "--endpoints", f2.addr, "members", "remove", "4", "-o", "json")
	if code != 0 || strings.Join(strings.Fields(out), " ") != `{ "id": 4, "removed": true }` {
		t.Errorf("remove -o json: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestMembershipErrorsToExitCodes(t *testing.T) {
	tests := []struct {
		code   connect.Code
		exit   int
		stderr string
	}{
		{connect.CodeFailedPrecondition, exitGeneric, "promote member 4: refused: injected"},
		{connect.CodeNotFound, exitNotFound, "promote member 4: no such member: injected"},
		{connect.CodePermissionDenied, exitPermissionDenied, "permission_denied"},
		{connect.CodeAborted, exitGeneric, "aborted"},
		{connect.CodeUnavailable, exitUnavailable, "cluster unavailable after"},
		{connect.CodeDeadlineExceeded, exitOutcomeUnknown, "the change may or may not have been applied; list the members"},
		{connect.CodeInternal, exitOutcomeUnknown, "outcome unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			f := newFakeKVD(t)
			f.failWith("Promote", tt.code)
			_, errOut, code := runKvctl(t, "", "--endpoints", f.addr, "--timeout", "300ms", "members", "promote", "4")
			// With 300 ms for the whole command, a loaded machine may let
			// the deadline strike while a retry of the Unavailable node is
			// in flight: that attempt's outcome is unknown (exit 6), which
			// is the right answer for it.
			if tt.code == connect.CodeUnavailable && code == exitOutcomeUnknown &&
				strings.Contains(errOut, "deadline_exceeded") && strings.Contains(errOut, "list the members") {
				return
			}
			if code != tt.exit {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.exit, errOut)
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.stderr)
			}
		})
	}
}
