package main

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
)

func TestUsageErrors(t *testing.T) {
	f := newFakeKVD(t)
	ep := "--endpoints=" + f.addr
	tests := []struct {
		name   string
		args   []string
		stderr string // part of it
	}{
		{"put without args", []string{ep, "put"}, "kvctl put: missing KEY VALUE"},
		{"put without value", []string{ep, "put", "k"}, "kvctl put: missing VALUE"},
		{"get without key", []string{ep, "get"}, "kvctl get: missing KEY"},
		{"get with two keys", []string{ep, "get", "a", "b"}, `too many arguments ["b"]: want KEY`},
		{"bad flag after the key", []string{ep, "get", "k", "--consistency", "eventual"},
			`invalid --consistency "eventual"`},
		{"unknown consistency", []string{ep, "get", "--consistency", "eventual", "k"},
			`invalid --consistency "eventual": want linearizable or serializable`},
		{"unknown flag", []string{ep, "get", "--bogus", "k"}, "flag provided but not defined: -bogus (see kvctl get --help)"},
		{"unknown global flag", []string{"--bogus", "get", "k"}, "flag provided but not defined: -bogus (see kvctl --help)"},
		{"bad revision", []string{ep, "put", "--if-mod-revision", "abc", "k", "v"}, "if-mod-revision"},
		{"unknown command", []string{ep, "frob"}, `unknown command "frob"`},
		{"bad output", []string{ep, "-o", "yaml", "get", "k"}, `invalid --output "yaml": want table or json`},
		{"bad protocol", []string{ep, "--protocol", "http3", "get", "k"}, `invalid --protocol "http3"`},
		{"bad timeout", []string{ep, "--timeout", "0s", "get", "k"}, "invalid --timeout 0s"},
		{"empty endpoints", []string{"--endpoints", " , ", "get", "k"}, "--endpoints is empty"},
		{"endpoint without port", []string{"--endpoints", "localhost", "get", "k"},
			`invalid --endpoints: client: endpoint "localhost" has no host or port`},
		{"negative limit", []string{ep, "scan", "--limit", "-1", "p"}, "invalid --limit -1"},
		{"members with args", []string{ep, "members", "x"},
			`kvctl members: unknown subcommand "x": want list, promote ID or remove ID`},
		{"members list with args", []string{ep, "members", "list", "x"}, `kvctl members list takes no arguments, got ["x"]`},
		{"promote without ID", []string{ep, "members", "promote"},
			"kvctl members promote: missing ID (usage: kvctl members promote [options] ID)"},
		{"promote with a bad ID", []string{ep, "members", "promote", "n4"},
			`kvctl members promote: invalid member ID "n4": want a positive integer`},
		{"promote of ID 0", []string{ep, "members", "promote", "0"}, `invalid member ID "0"`},
		{"remove of two IDs", []string{ep, "members", "remove", "4", "5"},
			`kvctl members remove: too many arguments ["5"]: want ID`},
		{"remove with an unknown flag", []string{ep, "members", "remove", "4", "--force"},
			"flag provided but not defined: -force (see kvctl members remove --help)"},
		{"bad join secret", []string{ep, "--join-secret", "s3cret\n", "members", "promote", "4"},
			"Config.JoinSecret has a control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runKvctl(t, "", tt.args...)
			if code != exitInvalid {
				t.Errorf("exit code %d, want %d (stderr %q)", code, exitInvalid, errOut)
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.stderr)
			}
			if !strings.HasPrefix(errOut, "Error: ") || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q: want one line starting with Error:", errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	out, _, code := runKvctl(t, "", "--help")
	if code != 0 {
		t.Fatalf("--help: code %d", code)
	}
	for _, want := range []string{"EXIT CODES", "2  key not found", "3  compare failed", "4  cluster unavailable",
		"5  invalid usage", "6  outcome unknown", "7  permission denied", "KVCTL_ENDPOINTS", "--output value, -o value",
		"--join-secret value", "KVCTL_JOIN_SECRET", "--cacert FILE", "KVCTL_CACERT", "--cert FILE", "KVCTL_CERT",
		"--key FILE", "KVCTL_KEY", "certs"} {
		if !strings.Contains(out, want) {
			t.Errorf("kvctl --help lacks %q", want)
		}
	}
	if out2, _, code := runKvctl(t, ""); code != 0 || out2 != out {
		t.Errorf("kvctl without arguments: code %d, want the help", code)
	}
}

func TestHelpHidesTheJoinSecret(t *testing.T) {
	t.Setenv("KVCTL_JOIN_SECRET", "hunter2-secret")
	for _, args := range [][]string{{"--help"}, {"members", "--help"}, {"members", "promote", "--help"}} {
		out, errOut, code := runKvctl(t, "", args...)
		if code != 0 {
			t.Errorf("%v: code %d, stderr %q", args, code, errOut)
		}
		if strings.Contains(out+errOut, "hunter2") {
			t.Errorf("kvctl %v shows the join secret:\n%s", args, out)
		}
	}
	out, _, _ := runKvctl(t, "", "members", "--help")
	for _, want := range []string{"members [list]", "members promote ID", "members remove ID", "list", "promote", "remove"} {
		if !strings.Contains(out, want) {
			t.Errorf("kvctl members --help lacks %q:\n%s", want, out)
		}
	}
}

func TestServerErrorsToExitCodes(t *testing.T) {
	tests := []struct {
		code   connect.Code
		exit   int
		stderr string
	}{
		{connect.CodeUnavailable, exitUnavailable, "cluster unavailable after"},
		{connect.CodeInvalidArgument, exitInvalid, "invalid_argument: injected"},
		{connect.CodePermissionDenied, exitPermissionDenied, "permission_denied"},
		{connect.CodeInternal, exitGeneric, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			f := newFakeKVD(t)
			f.failWith("Get", tt.code)
			_, errOut, code := runKvctl(t, "", "--endpoints", f.addr, "--timeout", "300ms", "get", "k")
			if code != tt.exit {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.exit, errOut)
			}
			// With 300 ms for the whole command, an Unavailable node may
			// also see the deadline strike during an attempt on a loaded
			// machine: both say the cluster did not answer in time.
			ranOut := tt.code == connect.CodeUnavailable && strings.Contains(errOut, "deadline_exceeded") &&
				strings.Contains(errOut, "attempt(s)")
			if !strings.Contains(errOut, tt.stderr) && !ranOut {
				t.Errorf("stderr %q does not contain %q", errOut, tt.stderr)
			}
		})
	}
}

func TestNoEndpointReachable(t *testing.T) {
	a, b := downAddr(t), downAddr(t)
	// A generous timeout: every attempt is refused at once, so the client
	// gives up after its attempts, not at the deadline (500 ms was passed
	// by the backoffs and a slow dial on a loaded CI machine).
	out, errOut, code := runKvctl(t, "", "--endpoints", a+","+b, "--timeout", "5s", "status")
	if code != exitUnavailable {
		t.Errorf("exit code %d, want %d", code, exitUnavailable)
	}
	if want := "no endpoint reachable: tried " + a + "," + b + "; is kvd running? check --endpoints"; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q does not contain %q", errOut, want)
	}
	if out != "" {
		t.Errorf("stdout %q", out)
	}
}

func TestWriteTimeoutIsOutcomeUnknown(t *testing.T) {
	f := newFakeKVD(t)
	f.setDelay(2 * time.Second)
	_, errOut, code := runKvctl(t, "", "--endpoints", f.addr, "--timeout", "100ms", "put", "k", "v")
	if code != exitOutcomeUnknown {
		t.Errorf("exit code %d, want %d (stderr %q)", code, exitOutcomeUnknown, errOut)
	}
	if !strings.Contains(errOut, "outcome unknown") {
		t.Errorf("stderr %q does not say the outcome is unknown", errOut)
	}
	// A read that times out is "unavailable".
	_, errOut, code = runKvctl(t, "", "--endpoints", f.addr, "--timeout", "100ms", "get", "k")
	if code != exitUnavailable {
		t.Errorf("read timeout: exit code %d, want %d (stderr %q)", code, exitUnavailable, errOut)
	}
}

func TestFailoverAndProtocols(t *testing.T) {
	for _, proto := range []string{"connect", "grpc", "grpcweb"} {
		t.Run(proto, func(t *testing.T) {
			f := newFakeKVD(t)
			eps := downAddr(t) + ", http://" + f.addr
			if _, errOut, code := runKvctl(t, "", "--endpoints", eps, "--protocol", proto, "put", "k", "v"); code != 0 {
				t.Fatalf("put: code %d, stderr %q", code, errOut)
			}
			if out, _, _ := runKvctl(t, "", "--endpoints", eps, "--protocol", proto, "get", "k"); out != "v\n" {
				t.Errorf("get = %q", out)
			}
		})
	}
}

func TestEndpointsFromEnvironment(t *testing.T) {
	f := newFakeKVD(t)
	f.set("k", "from env")
	t.Setenv("KVCTL_ENDPOINTS", f.addr)
	if out, errOut, code := runKvctl(t, "", "get", "k"); code != 0 || out != "from env\n" {
		t.Errorf("get with KVCTL_ENDPOINTS: code %d, %q, %q", code, out, errOut)
	}
	// The flag wins over the environment.
	if _, _, code := runKvctl(t, "", "--endpoints", downAddr(t), "--timeout", "300ms", "get", "k"); code != exitUnavailable {
		t.Errorf("--endpoints did not override KVCTL_ENDPOINTS: code %d", code)
	}
}

func TestRun(t *testing.T) {
	f := newFakeKVD(t)
	f.set("k", "v")
	var out, errOut strings.Builder
	if code := run([]string{"kvctl", "--endpoints", f.addr, "get", "nope"}, &out, &errOut); code != exitNotFound {
		t.Errorf("run: code %d, want %d", code, exitNotFound)
	}
}

func TestPermuteArgs(t *testing.T) {
	app := newApp(new(strings.Builder), new(strings.Builder))
	tests := []struct{ in, want string }{
		{"kvctl get k --consistency serializable", "kvctl get --consistency serializable k"},
		{"kvctl members -o json", "kvctl -o json members"},
		{"kvctl --endpoints a:1 scan p --limit 2 -o=json --keys-only", "kvctl --endpoints a:1 -o=json scan --limit 2 --keys-only p"},
		{"kvctl put k v --if-mod-revision 3 --timeout 2s", "kvctl --timeout 2s put --if-mod-revision 3 k v"},
		{"kvctl put k -- -v", "kvctl put -- k -v"},
		{"kvctl put --if-mod-revision 0 -- -k v", "kvctl put --if-mod-revision 0 -- -k v"},
		{"kvctl put k -", "kvctl put k -"},
		{"kvctl -o json", "kvctl -o json"},
		{"kvctl frob -x", "kvctl frob -x"},
		// Subcommands: options move after the innermost command that has them.
		{"kvctl members remove 123 -o json", "kvctl -o json members remove 123"},
		{"kvctl members list -o json", "kvctl -o json members list"},
		{"kvctl members -o json promote 7 --join-secret s", "kvctl -o json --join-secret s members promote 7"},
		{"kvctl --endpoints a:1 members promote 7 --timeout=2s", "kvctl --endpoints a:1 --timeout=2s members promote 7"},
		{"kvctl members remove 5 --bogus", "kvctl members remove --bogus 5"},
		{"kvctl members --bogus remove 5", "kvctl members remove --bogus 5"},
		{"kvctl members 7 remove -o json", "kvctl -o json members 7 remove"}, // not a subcommand after an argument
		{"kvctl members remove -- -5", "kvctl members remove -- -5"},
		{"kvctl members -o json", "kvctl -o json members"},
		{"kvctl get list -o json", "kvctl -o json get list"}, // get has no subcommands
	}
	for _, tt := range tests {
		got := strings.Join(permuteArgs(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("permuteArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
