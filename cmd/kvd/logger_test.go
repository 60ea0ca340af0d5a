package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/lni/dragonboat/v4"
)

// Dragonboat's errors (github.com/cockroachdb/errors) print the stack of
// where they were made under %+v, which slog's text handler uses for
// values it cannot otherwise render: a log line shows the error's message
// only, in both formats, whether the error is Dragonboat's own or wraps it.
func TestLogsShowErrorsWithoutStacks(t *testing.T) {
	if s := fmt.Sprintf("%+v", dragonboat.ErrTimeout); !strings.Contains(s, "stack trace") {
		t.Fatalf("premise: %%+v of a Dragonboat error has no stack trace any more:\n%s", s)
	}
	for format, want := range map[string]string{
		"text": `level=WARN msg=propose err=timeout wrapped="read: timeout"`,
		"json": `"level":"WARN","msg":"propose","err":"timeout","wrapped":"read: timeout"}`,
	} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Warn("propose", "err", dragonboat.ErrTimeout, "wrapped", fmt.Errorf("read: %w", dragonboat.ErrTimeout))
		if got := buf.String(); strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, want+"\n") {
			t.Errorf("%s: got\n%s\nwant one line ending in\n%s", format, got, want)
		}
	}
}
