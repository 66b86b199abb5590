package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// completionShells are the shells `unibus completion` writes a script for.
var completionShells = []string{"bash", "zsh", "fish"}

// runCompletion runs `unibus completion SHELL`.
func runCompletion(ctx context.Context, x *invocation, args []string) error {
	m := completionModel(x.commands)
	switch args[0] {
	case "bash":
		return writeBashCompletion(x.stdout, m)
	case "zsh":
		return writeZshCompletion(x.stdout, m)
	case "fish":
		return writeFishCompletion(x.stdout, m)
	}
	return usagef("no completion for the shell %q: use %s", args[0], strings.Join(completionShells, ", "))
}

// compItem is a word or a flag a shell offers, with what it does.
type compItem struct {
	word  string // "create", "--json", "-o"
	help  string
	value bool // a flag followed by its value
	path  bool // a flag whose value is a file
}

// compModel is what a completion script knows of unibus, all of it read
// from the command table (commands, groups, each command's flag set), so
// that the scripts cannot drift from the commands.
type compModel struct {
	top    []compItem            // the first word: the groups, the other commands, help
	groups []string              // the commands that have sub-commands
	subs   map[string][]compItem // a group's second word
	names  []string              // every command, "room create", in order
	flags  map[string][]compItem // a command's flags, the client settings and --help among them
	global []compItem            // before any command: the client settings, --help, --version
	args   map[string][]string   // the words a command's first argument may be
	// valueFlags and pathFlags are every spelling (--name and -name) of
	// the flags that take a value, and of those whose value is a file.
	valueFlags, pathFlags []string
}

// groupCommands is the group g's commands: its second words but help.
func (m compModel) groupCommands(g string) []compItem {
	s := m.subs[g]
	return s[:len(s)-1] // help, added last
}

// completionModel reads the model from the command table cmds.
func completionModel(cmds []*command) compModel {
	m := compModel{subs: map[string][]compItem{}, flags: map[string][]compItem{}, args: map[string][]string{}}
	value, path := map[string]bool{}, map[string]bool{}
	addFlags := func(items []compItem) {
		for _, it := range items {
			name := strings.TrimLeft(it.word, "-")
			if it.value {
				value[name] = true
			}
			if it.path {
				path[name] = true
			}
		}
	}
	for _, c := range cmds {
		words := strings.Fields(c.name)
		if title := groups[words[0]]; title != "" && len(words) == 2 {
			if !slices.Contains(m.groups, words[0]) {
				m.groups = append(m.groups, words[0])
				m.top = append(m.top, compItem{word: words[0], help: strings.ToLower(strings.TrimSuffix(title, ":"))})
			}
			m.subs[words[0]] = append(m.subs[words[0]], compItem{word: words[1], help: c.help})
		} else {
			m.top = append(m.top, compItem{word: c.name, help: c.help})
		}
		m.names = append(m.names, c.name)
		var o options
		items := flagItems(newFlagSet(c, &o))
		m.flags[c.name] = append(items, compItem{word: "--help", help: "show the command's flags"})
		addFlags(items)
	}
	for _, g := range m.groups {
		m.subs[g] = append(m.subs[g], compItem{word: "help", help: "show the " + g + " commands"})
	}
	topics := make([]string, 0, len(m.top))
	for _, it := range m.top {
		topics = append(topics, it.word)
	}
	m.top = append(m.top, compItem{word: "help", help: "show the commands, or a command's flags"})
	m.args["help"] = topics
	m.args["completion"] = completionShells

	fs := flag.NewFlagSet("unibus", flag.ContinueOnError)
	var o options
	defineSettings(fs, &o)
	m.global = append(flagItems(fs),
		compItem{word: "--help", help: "show the commands, or a command's flags"},
		compItem{word: "--version", help: "print the build's version"})
	addFlags(m.global)
	for _, names := range []struct {
		set map[string]bool
		out *[]string
	}{{value, &m.valueFlags}, {path, &m.pathFlags}} {
		for n := range names.set {
			*names.out = append(*names.out, "--"+n, "-"+n)
		}
		slices.Sort(*names.out)
	}
	return m
}

// flagItems returns the flags of fs, as a shell offers them.
func flagItems(fs *flag.FlagSet) []compItem {
	var items []compItem
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		items = append(items, compItem{word: dash + f.Name, help: usage, value: takesValue(fs, f.Name), path: arg == "PATH"})
	})
	return items
}

// words is the words of items, separated by spaces.
func words(items []compItem) string {
	w := make([]string, len(items))
	for i, it := range items {
		w[i] = it.word
	}
	return strings.Join(w, " ")
}

// caseWords is the pattern of a shell `case` that matches any of ws;
// command and flag names need no quoting.
func caseWords(ws []string) string { return strings.Join(ws, "|") }

func writeBashCompletion(w io.Writer, m compModel) error {
	var b strings.Builder
	b.WriteString(`# bash completion for unibus, written by ` + "`unibus completion bash`" + `.
# Load it in this shell:  source <(unibus completion bash)
# and in every new one:   unibus completion bash > ~/.local/share/bash-completion/completions/unibus

# _unibus completes the word under the cursor from the words before it: the
# command they name (the client settings and their values may come anywhere)
# and the arguments given to it.
_unibus() {
    local line=${COMP_LINE:0:COMP_POINT} cur="" cmd="" want="" dashdash="" w i
    local -a words args
    read -r -a words <<<"$line"
    if [[ -n $line && $line != *[[:space:]] ]]; then
        cur=${words[${#words[@]}-1]}
        unset "words[${#words[@]}-1]"
    fi
    for ((i = 1; i < ${#words[@]}; i++)); do
        w=${words[i]}
        if [[ -n $want ]]; then
            want=""
            continue
        fi
        if [[ -z $dashdash ]]; then
            case $w in
            --) dashdash=1; continue ;;
            -*=*) continue ;;
            ` + caseWords(m.valueFlags) + `) want=$w; continue ;;
            -*) continue ;;
            esac
        fi
        if [[ -z $cmd ]]; then
            cmd=$w
        elif [[ ${#args[@]} -eq 0 ]]; then
            case $cmd in
            ` + caseWords(m.groups) + `) cmd="$cmd $w" ;;
            *) args+=("$w") ;;
            esac
        else
            args+=("$w")
        fi
    done
    COMPREPLY=()
    if [[ -n $want ]]; then
        case $want in
        ` + caseWords(m.pathFlags) + `)
            compopt -o filenames 2>/dev/null
            local IFS=$'\n'
            COMPREPLY=($(compgen -f -- "$cur")) ;;
        esac
        return 0
    fi
    local offer=""
    if [[ -z $dashdash && $cur == -* ]]; then
        case $cmd in
`)
	for _, name := range m.names {
		fmt.Fprintf(&b, "        %q) offer=%q ;;\n", name, words(m.flags[name]))
	}
	fmt.Fprintf(&b, "        *) offer=%q ;;\n", words(m.global))
	b.WriteString(`        esac
    else
        case $cmd in
`)
	fmt.Fprintf(&b, "        \"\") offer=%q ;;\n", words(m.top))
	for _, g := range m.groups {
		fmt.Fprintf(&b, "        %s) offer=%q ;;\n", g, words(m.subs[g]))
	}
	b.WriteString("        completion) [[ ${#args[@]} -eq 0 ]] && offer=\"" + strings.Join(m.args["completion"], " ") + "\" ;;\n")
	b.WriteString(`        help)
            if [[ ${#args[@]} -eq 0 ]]; then
                offer="` + strings.Join(m.args["help"], " ") + `"
            elif [[ ${#args[@]} -eq 1 ]]; then
                case ${args[0]} in
`)
	for _, g := range m.groups {
		fmt.Fprintf(&b, "                %s) offer=%q ;;\n", g, words(m.groupCommands(g)))
	}
	b.WriteString(`                esac
            fi ;;
        esac
    fi
    COMPREPLY=($(compgen -W "$offer" -- "$cur"))
}

complete -F _unibus unibus
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// zshQuote quotes s for zsh in single quotes.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// zshItems is a zsh array of 'word:description' for _describe.
func zshItems(items []compItem) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = zshQuote(strings.ReplaceAll(it.word, ":", `\:`) + ":" + it.help)
	}
	return "(" + strings.Join(q, " ") + ")"
}

func writeZshCompletion(w io.Writer, m compModel) error {
	var b strings.Builder
	b.WriteString(`#compdef unibus
# zsh completion for unibus, written by ` + "`unibus completion zsh`" + `.
# Load it in this shell:  source <(unibus completion zsh)
# and in every new one:   unibus completion zsh > "${fpath[1]}/_unibus"

# _unibus completes the word under the cursor from the words before it: the
# command they name (the client settings and their values may come anywhere)
# and the arguments given to it.
_unibus() {
  local cmd="" want="" dashdash="" w i cur=${words[CURRENT]}
  local -a args cands
  for ((i = 2; i < CURRENT; i++)); do
    w=${words[i]}
    if [[ -n $want ]]; then
      want=""
      continue
    fi
    if [[ -z $dashdash ]]; then
      case $w in
        (--) dashdash=1; continue ;;
        (-*=*) continue ;;
        (` + caseWords(m.valueFlags) + `) want=$w; continue ;;
        (-*) continue ;;
      esac
    fi
    if [[ -z $cmd ]]; then
      cmd=$w
    elif (( ${#args} == 0 )) && [[ $cmd == (` + caseWords(m.groups) + `) ]]; then
      cmd="$cmd $w"
    else
      args+=("$w")
    fi
  done
  if [[ -n $want ]]; then
    case $want in
      (` + caseWords(m.pathFlags) + `) _files ;;
      (*) _message "${want#--} value" ;;
    esac
    return
  fi
  if [[ -z $dashdash && $cur == -* ]]; then
    case $cmd in
`)
	for _, name := range m.names {
		fmt.Fprintf(&b, "      (%s) cands=%s ;;\n", zshQuote(name), zshItems(m.flags[name]))
	}
	fmt.Fprintf(&b, "      (*) cands=%s ;;\n", zshItems(m.global))
	b.WriteString(`    esac
    _describe -t flags flag cands
    return
  fi
  case $cmd in
`)
	fmt.Fprintf(&b, "    ('') cands=%s ;;\n", zshItems(m.top))
	for _, g := range m.groups {
		fmt.Fprintf(&b, "    (%s) cands=%s ;;\n", g, zshItems(m.subs[g]))
	}
	b.WriteString("    (completion) (( ${#args} == 0 )) && cands=(" + strings.Join(m.args["completion"], " ") + ") ;;\n")
	b.WriteString(`    (help)
      if (( ${#args} == 0 )); then
        cands=(` + strings.Join(m.args["help"], " ") + `)
      elif (( ${#args} == 1 )); then
        case ${args[1]} in
`)
	for _, g := range m.groups {
		fmt.Fprintf(&b, "          (%s) cands=%s ;;\n", g, zshItems(m.groupCommands(g)))
	}
	b.WriteString(`        esac
      fi ;;
  esac
  (( ${#cands} )) && _describe -t commands command cands
}

if [[ ${funcstack[1]} == _unibus ]]; then
  _unibus "$@"
else
  compdef _unibus unibus
fi
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// fishQuote quotes s for fish in single quotes.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// fishFlag is the complete line of one flag under condition cond.
func fishFlag(cond string, it compItem) string {
	name := strings.TrimLeft(it.word, "-")
	opt := "-l " + name
	if len(name) == 1 {
		opt = "-s " + name
	}
	if it.path {
		opt += " -r -F"
	} else if it.value {
		opt += " -x"
	}
	if cond != "" {
		cond = " -n " + fishQuote(cond)
	}
	return fmt.Sprintf("complete -c unibus%s %s -d %s\n", cond, opt, fishQuote(it.help))
}

func writeFishCompletion(w io.Writer, m compModel) error {
	var b strings.Builder
	b.WriteString(`# fish completion for unibus, written by ` + "`unibus completion fish`" + `.
# Load it in this shell:  unibus completion fish | source
# and in every new one:   unibus completion fish > ~/.config/fish/completions/unibus.fish

# __unibus_words prints the command named by the words before the cursor
# ("room create", or nothing) on its first line, then the arguments given to
# it, one a line; the client settings and their values may come anywhere.
function __unibus_words
    set -l cmd ''
    set -l args
    set -l want 0
    set -l dashdash 0
    set -l tokens (commandline -opc)
    set -e tokens[1]
    for w in $tokens
        if test $want = 1
            set want 0
            continue
        end
        if test $dashdash = 0
            switch $w
                case --
                    set dashdash 1
                    continue
                case '-*=*'
                    continue
                case ` + strings.Join(m.valueFlags, " ") + `
                    set want 1
                    continue
                case '-*'
                    continue
            end
        end
        if test -z "$cmd"
            set cmd $w
        else if test (count $args) = 0; and contains -- $cmd ` + strings.Join(m.groups, " ") + `
            set cmd "$cmd $w"
        else
            set -a args $w
        end
    end
    printf '%s\n' "$cmd" $args
end

# __unibus_is CMD [N]: the words before the cursor name CMD and, given N,
# N of its arguments.
function __unibus_is
    set -l w (__unibus_words)
    test "$w[1]" = "$argv[1]"; or return 1
    test (count $argv) -lt 2; or test (math (count $w) - 1) = $argv[2]
end

complete -c unibus -f
`)
	for _, it := range m.global {
		cond := ""
		if it.word == "--version" {
			cond = "__unibus_is ''"
		}
		b.WriteString(fishFlag(cond, it))
	}
	for _, it := range m.top {
		fmt.Fprintf(&b, "complete -c unibus -n %s -a %s -d %s\n", fishQuote("__unibus_is ''"), it.word, fishQuote(it.help))
	}
	for _, g := range m.groups {
		for _, it := range m.subs[g] {
			fmt.Fprintf(&b, "complete -c unibus -n %s -a %s -d %s\n", fishQuote("__unibus_is "+g), it.word, fishQuote(it.help))
		}
	}
	for _, name := range m.names {
		for _, it := range m.flags[name] {
			if slices.ContainsFunc(m.global, func(g compItem) bool { return g.word == it.word }) {
				continue // offered everywhere already
			}
			b.WriteString(fishFlag("__unibus_is "+fishQuote(name), it))
		}
	}
	fmt.Fprintf(&b, "complete -c unibus -n %s -a %s\n", fishQuote("__unibus_is completion 0"), fishQuote(strings.Join(m.args["completion"], " ")))
	fmt.Fprintf(&b, "complete -c unibus -n %s -a %s\n", fishQuote("__unibus_is help 0"), fishQuote(strings.Join(m.args["help"], " ")))
	for _, g := range m.groups {
		fmt.Fprintf(&b, "complete -c unibus -n %s -a %s\n", fishQuote("__unibus_is help 1; and test (__unibus_words)[2] = "+g), fishQuote(words(m.groupCommands(g))))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
