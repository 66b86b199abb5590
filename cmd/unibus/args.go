package main

import (
	"flag"
	"strings"
)

// permute separates the flags in args from the positional arguments, each
// group keeping its order, because a flag.FlagSet stops at the first
// positional argument and unibus accepts flags on either side
// (`unibus room create ops --json`). Parsing flags alone leaves fs.Args()
// empty; pos are the positional arguments.
//
// A flag takes the next argument as its value unless fs defines it as a
// boolean flag or it is written -flag=value; a value flag with nothing after
// it stays last in flags, for fs.Parse to report. A flag fs does not define
// is taken as boolean, so that fs.Parse reports it. "--" ends the flags:
// what follows it is positional even if it starts with '-'. A lone "-" is
// positional.
func permute(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !isFlag(a) {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name, hasValue := flagName(a)
		if !hasValue && takesValue(fs, name) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, pos
}

// parseArgs parses the flags in args, wherever they are, into fs and
// returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	flags, pos := permute(fs, args)
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return append(fs.Args(), pos...), nil
}

// isFlag reports whether a is written as a flag: a dash and something more.
func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// flagName returns the name of the flag written as a (-name, --name,
// -name=value) and whether the value is attached.
func flagName(a string) (name string, hasValue bool) {
	name = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	name, _, hasValue = strings.Cut(name, "=")
	return name, hasValue
}

// takesValue reports whether fs defines name as a flag that needs a value.
func takesValue(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// isHelpFlag reports whether a asks for help the way the flag package
// understands it.
func isHelpFlag(a string) bool {
	switch a {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// splitCommand picks the command words out of args: the first positional
// argument and, when it names a group (id, user, room), the next one. The
// client settings that take a value (--server URL and the like) may come
// before or between the words; everything that is not a command word is
// returned in rest, in order, for the command's own flag set.
func splitCommand(args []string) (words, rest []string) {
	want := 1
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(words) == want || a == "--" {
			return words, append(rest, args[i:]...)
		}
		if !isFlag(a) {
			words = append(words, a)
			if len(words) == 1 && groups[a] != "" {
				want = 2
			}
			continue
		}
		rest = append(rest, a)
		if name, hasValue := flagName(a); !hasValue && settingFlags[name] && i+1 < len(args) {
			i++
			rest = append(rest, args[i])
		}
	}
	return words, rest
}
