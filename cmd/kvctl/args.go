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
	i := commandIndex(app, args)
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	s := &argSorter{app: app, path: []*cmdLevel{{name: args[i], cmd: cmd}}}
	s.sort(args[i+1:])
	return s.join(args[:i])
}

// commandIndex is the index of the command name: the first argument after
// the global options (and their values) that lead.
func commandIndex(app *cli.App, args []string) int {
	i := 1
	for i < len(args) && isOption(args[i]) {
		if takesValue(app.Flags, args[i]) && !strings.Contains(args[i], "=") {
			i++
		}
		i++
	}
	return i
}

// cmdLevel is a command or subcommand as typed, with its options.
type cmdLevel struct {
	name string
	cmd  *cli.Command
	opts []string
}

// argSorter sorts what follows the command name into the command path
// (each level with its options), global options, unknown options and
// positional arguments.
type argSorter struct {
	app                          *cli.App
	path                         []*cmdLevel
	globals, unknown, positional []string
}

func (s *argSorter) sort(args []string) {
	for j := 0; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			// Go's flag parsing stops at the first argument, so "--"
			// must come before all of them to keep its meaning.
			s.positional = append(append([]string{"--"}, s.positional...), args[j+1:]...)
			return
		}
		if !isOption(a) {
			if sub := s.path[len(s.path)-1].cmd.Command(a); sub != nil && len(s.positional) == 0 {
				s.path = append(s.path, &cmdLevel{name: a, cmd: sub})
			} else {
				s.positional = append(s.positional, a)
			}
			continue
		}
		dst, flags := s.owner(a)
		*dst = append(*dst, a)
		if takesValue(flags, a) && !strings.Contains(a, "=") && j+1 < len(args) {
			j++
			*dst = append(*dst, args[j])
		}
	}
}

// owner is where option a goes: to the innermost command on the path that
// defines it, else to the globals, else to the unknown; with the flags
// that define it (nil when unknown).
func (s *argSorter) owner(a string) (*[]string, []cli.Flag) {
	for k := len(s.path) - 1; k >= 0; k-- {
		if findFlag(s.path[k].cmd.Flags, a) != nil {
			return &s.path[k].opts, s.path[k].cmd.Flags
		}
	}
	if findFlag(s.app.Flags, a) != nil {
		return &s.globals, s.app.Flags
	}
	return &s.unknown, nil
}

// join puts it back together after head (the program name and the
// leading global options): globals, each level with its options (unknown
// ones with the innermost), then the positional arguments.
func (s *argSorter) join(head []string) []string {
	last := s.path[len(s.path)-1]
	last.opts = append(last.opts, s.unknown...)
	out := append([]string{}, head...)
	out = append(out, s.globals...)
	for _, l := range s.path {
		out = append(out, l.name)
		out = append(out, l.opts...)
	}
	return append(out, s.positional...)
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
