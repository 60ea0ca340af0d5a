package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs lets options follow arguments, as users type them
// ("kvctl get k --consistency serializable", "kvctl members remove 7 -o
// json"), which urfave/cli v2 does not parse by itself. After the command
// name it descends into subcommands (a subcommand is named by the first
// argument that is not an option), then moves each option right after the
// innermost command on that path that defines it, global options before the
// command, all ahead of the arguments. Everything after "--" stays an
// argument; unknown options go to the innermost command, which reports them.
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
	// path is the command and its subcommands as typed, each with its options.
	type level struct {
		name string
		cmd  *cli.Command
		opts []string
	}
	path := []*level{{name: args[i], cmd: cmd}}
	var globals, unknown, positional []string
	for j := i + 1; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			// Go's flag parsing stops at the first argument, so "--"
			// must come before all of them to keep its meaning.
			positional = append(append([]string{"--"}, positional...), args[j+1:]...)
			break
		}
		if !isOption(a) {
			if sub := path[len(path)-1].cmd.Command(a); sub != nil && len(positional) == 0 {
				path = append(path, &level{name: a, cmd: sub})
			} else {
				positional = append(positional, a)
			}
			continue
		}
		dst, flags := &unknown, []cli.Flag(nil)
		for k := len(path) - 1; k >= 0; k-- {
			if findFlag(path[k].cmd.Flags, a) != nil {
				dst, flags = &path[k].opts, path[k].cmd.Flags
				break
			}
		}
		if flags == nil && findFlag(app.Flags, a) != nil {
			dst, flags = &globals, app.Flags
		}
		*dst = append(*dst, a)
		if takesValue(flags, a) && !strings.Contains(a, "=") && j+1 < len(args) {
			j++
			*dst = append(*dst, args[j])
		}
	}
	last := path[len(path)-1]
	last.opts = append(last.opts, unknown...)
	out := append([]string{}, args[:i]...)
	out = append(out, globals...)
	for _, l := range path {
		out = append(out, l.name)
		out = append(out, l.opts...)
	}
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
