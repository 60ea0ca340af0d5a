package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs lets options follow arguments, as users type them
// ("kvctl get k --consistency serializable", "kvctl members -o json"),
// which urfave/cli v2 does not parse by itself: after the command name,
// global options move before the command and the command's options move
// right after it, ahead of its arguments. Everything after "--" stays an
// argument; unknown options stay with the command, which reports them.
func permuteArgs(app *cli.App, args []string) []string {
	i := 1
	for i < len(args) && isOption(args[i]) {
		if takesValue(app.Flags, args[i]) && !strings.Contains(args[i], "=") {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	var globals, opts, positional []string
	for j := i + 1; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			// Go's flag parsing stops at the first argument, so "--"
			// must come before all of them to keep its meaning.
			positional = append(append([]string{"--"}, positional...), args[j+1:]...)
			break
		}
		if !isOption(a) {
			positional = append(positional, a)
			continue
		}
		dst := &opts
		flags := cmd.Flags
		if findFlag(cmd.Flags, a) == nil && findFlag(app.Flags, a) != nil {
			dst, flags = &globals, app.Flags
		}
		*dst = append(*dst, a)
		if takesValue(flags, a) && !strings.Contains(a, "=") && j+1 < len(args) {
			j++
			*dst = append(*dst, args[j])
		}
	}
	out := append([]string{}, args[:i]...)
	out = append(out, globals...)
	out = append(out, args[i])
	out = append(out, opts...)
	return append(out, positional...)
}

func isOption(a string) bool { return len(a) > 1 && a[0] == '-' }

// optionName strips dashes and any "=value".
func optionName(a string) string {
	name := strings.TrimLeft(a, "-")
	name, _, _ = strings.Cut(name, "=")
	return name
}

func findFlag(flags []cli.Flag, a string) cli.Flag {
	name := optionName(a)
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func takesValue(flags []cli.Flag, a string) bool {
	f := findFlag(flags, a)
	if f == nil {
		return false
	}
	tv, ok := f.(interface{ TakesValue() bool })
	return ok && tv.TakesValue()
}
