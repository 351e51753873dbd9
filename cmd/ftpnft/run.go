package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/internal/input"
	"github.com/ftpnft/ftpnft/internal/netns"
	"github.com/ftpnft/ftpnft/nft"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the kernel or the system said no
	exitUsage   = 2 // bad command line or input; nothing was changed
)

// run is the whole command line program; main only exits with its result.
// Every write to stdout is checked: output that could not be written (a
// full disk, a closed pipe) fails the command with exit 1.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	out := &checkedWriter{w: stdout}
	code := dispatch(ctx, args, out, stderr)
	if err := out.failed(); code == exitOK && err != nil {
		fmt.Fprintf(stderr, "ftpnft %s: write output: %v\n", args[0], err)
		return exitFailure
	}
	return code
}

// checkedWriter keeps the first error of its writes, and writes nothing
// after it. A watch's writer may still be blocked in a write while the
// command ends, so the error is kept atomically, not under a lock.
type checkedWriter struct {
	w   io.Writer
	err atomic.Pointer[error]
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if e := c.err.Load(); e != nil {
		return 0, *e
	}
	n, err := c.w.Write(p)
	if err != nil {
		c.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// failed returns the first write error.
func (c *checkedWriter) failed() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

// dispatch runs the command that args name.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			fmt.Fprint(stdout, help(rest[0]))
		} else {
			fmt.Fprint(stdout, usage)
		}
		return exitOK
	case "version", "-version", "--version":
		fmt.Fprint(stdout, versionLine())
		return exitOK
	case "install", "uninstall", "status", "render", "doctor", "daemon":
	case "expectations":
		return expectations(ctx, rest, stdout, stderr)
	case "ban", "unban", "bans":
		return banCommand(ctx, cmd, rest, stdout, stderr)
	case "sessions":
		return sessions(ctx, rest, stdout, stderr)
	case "selftest":
		return selfTest(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "ftpnft: unknown command %s (try: ftpnft help)\n", input.Quote(cmd))
		return exitUsage
	}

	o, err := parseFlags(cmd, rest, stderr)
	if code, done := parsed(cmd, err, stdout, stderr); done {
		return code
	}

	switch cmd {
	case "render":
		fmt.Fprint(stdout, o.ruleset.Render())
		return exitOK
	case "install":
		return install(ctx, o, stdout, stderr)
	case "daemon":
		return daemon(ctx, rest, o, stderr)
	case "uninstall":
		return uninstall(ctx, o, stdout, stderr)
	case "doctor":
		return doctor(ctx, o, stdout, stderr)
	default:
		return status(ctx, o, stdout, stderr)
	}
}

// cliOptions is a parsed command line.
type cliOptions struct {
	cmd       string
	netns     string // path, "" for the current namespace
	compare   bool   // the configuration was given (flags or --config): status compares
	netnsArg  string // --netns as given
	trace     bool   // doctor --trace
	verify    bool   // status --verify
	traceFor  time.Duration
	cfg       nft.Config
	ruleset   *nft.Ruleset
	dryRun    bool
	force     bool
	stateDir  string // --state-dir
	logFormat string // daemon --log-format
	metrics   string // daemon --metrics-listen
	json      bool
}

func (o *cliOptions) conntrackOptions() []conntrack.Option {
	if o.netns == "" {
		return nil
	}
	return []conntrack.Option{conntrack.WithNetNS(o.netns)}
}

// netnsFlag is " --netns NAME" as the user gave it, for fixes to copy.
func (o *cliOptions) netnsFlag() string {
	if o.netnsArg == "" {
		return ""
	}
	return " --netns " + o.netnsArg
}

func (o *cliOptions) nftOptions() []nft.Option {
	var opts []nft.Option
	if o.netns != "" {
		opts = append(opts, nft.WithNetNS(o.netns))
	}
	if o.verify {
		opts = append(opts, nft.WithVerify())
	}
	if o.stateDir != "" {
		opts = append(opts, nft.WithStateDir(o.stateDir))
	}
	return opts
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func parseFlags(cmd string, args []string, stderr io.Writer) (*cliOptions, error) {
	fs := flag.NewFlagSet("ftpnft "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &cliOptions{cmd: cmd, cfg: nft.DefaultConfig()}
	netns := fs.String("netns", "", "")
	config := fs.String("config", "", "")
	fs.StringVar(&o.cfg.Table, "table", nft.DefaultTable, "")
	if cmd != "render" {
		fs.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "")
	}
	var ports, policy, roles, relatedPorts, passivePorts, connRate, maxConn string
	var allow, dnat, masquerade, sources, sourceFiles, blocks, blockFiles listFlag
	if cmd != "uninstall" {
		fs.StringVar(&roles, "role", string(nft.RoleServer), "")
		fs.StringVar(&ports, "ports", "21", "")
		fs.StringVar(&policy, "policy", string(nft.PolicyDrop), "")
		fs.Var(&allow, "allow", "")
		fs.Var(&dnat, "dnat", "")
		fs.Var(&masquerade, "masquerade", "")
		fs.StringVar(&relatedPorts, "related-ports", nft.DefaultRelatedPorts().String(), "")
		fs.StringVar(&passivePorts, "passive-ports", "", "")
		fs.Var(&sources, "source", "")
		fs.Var(&sourceFiles, "source-file", "")
		fs.Var(&blocks, "block", "")
		fs.Var(&blockFiles, "block-file", "")
		fs.StringVar(&maxConn, "max-conn-per-source", "0", "")
		fs.StringVar(&connRate, "conn-rate", "", "")
	}
	if cmd == "install" {
		fs.BoolVar(&o.dryRun, "dry-run", false, "")
		fs.BoolVar(&o.force, "force", false, "")
	}
	if cmd == "status" || cmd == "doctor" {
		fs.BoolVar(&o.json, "json", false, "")
	}
	if cmd == "status" {
		fs.BoolVar(&o.verify, "verify", false, "")
	}
	if cmd == "daemon" {
		fs.StringVar(&o.logFormat, "log-format", "text", "")
		fs.StringVar(&o.metrics, "metrics-listen", "", "")
	}
	if cmd == "doctor" {
		fs.BoolVar(&o.trace, "trace", false, "")
		fs.DurationVar(&o.traceFor, "for", 0, "")
	}
	if err := fs.Parse(args); err != nil {
		return nil, flagError(fs, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %s", input.Quote(fs.Arg(0)))
	}
	var from map[string]string // where the config file set a flag
	if *config != "" {
		var err error
		if from, err = applyConfig(fs, *config); err != nil {
			return nil, err
		}
	}
	// at names the config file's line for a bad value that came from it.
	at := func(name string, err error) error {
		if where, ok := from[name]; ok && err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return err
	}

	if cmd != "uninstall" {
		var err error
		if o.cfg.Roles, err = nft.ParseRoles(roles); err != nil {
			return nil, at("role", err)
		}
		if o.cfg.Ports, err = helper.ParsePorts(ports); err != nil {
			return nil, at("ports", err)
		}
		if o.cfg.Policy, err = nft.ParsePolicy(policy); err != nil {
			return nil, at("policy", err)
		}
		if o.cfg.Allow, err = parseEach(allow, nft.ParseService); err != nil {
			return nil, at("allow", err)
		}
		if o.cfg.DNAT, err = parseEach(dnat, nft.ParseDNAT); err != nil {
			return nil, at("dnat", err)
		}
		if o.cfg.Masquerade, err = parseEach(masquerade, nft.ParseInterface); err != nil {
			return nil, at("masquerade", err)
		}
		if o.cfg.RelatedPorts, err = nft.ParsePortRange(relatedPorts); err != nil {
			return nil, at("related-ports", fmt.Errorf("--related-ports: %w", err))
		}
		if passivePorts != "" {
			if o.cfg.PassivePorts, err = nft.ParsePortRange(passivePorts); err != nil {
				return nil, at("passive-ports", fmt.Errorf("--passive-ports: %w", err))
			}
		}
		if o.cfg.Sources, err = parseEach(sources, nft.ParseSource); err != nil {
			return nil, at("source", err)
		}
		for _, f := range sourceFiles {
			ps, err := nft.ReadSourceFile(f)
			if err != nil {
				return nil, at("source-file", err)
			}
			if len(ps) == 0 {
				return nil, at("source-file", fmt.Errorf("source file %s: no sources (an empty allowlist would admit everyone)", input.Clip(f)))
			}
			o.cfg.Sources = appendPrefixes(o.cfg.Sources, ps)
		}
		if o.cfg.Block, err = parseEach(blocks, nft.ParseSource); err != nil {
			return nil, at("block", fmt.Errorf("--block: %w", err))
		}
		for _, f := range blockFiles {
			ps, err := nft.ReadSourceFile(f)
			if err != nil {
				return nil, at("block-file", fmt.Errorf("--block-file: %w", err))
			}
			o.cfg.Block = appendPrefixes(o.cfg.Block, ps)
		}
		n, err := strconv.ParseUint(maxConn, 10, 32)
		if err != nil || n > 1<<31 {
			const want = "want 0 or more, at most 2147483648 (0: no limit)"
			if where, ok := from["max-conn-per-source"]; ok {
				return nil, fmt.Errorf("%s: invalid value %s: %s", where, input.Quote(maxConn), want)
			}
			return nil, fmt.Errorf("--max-conn-per-source %s: %s", input.Quote(maxConn), want)
		}
		o.cfg.MaxConnPerSource = uint32(n)
		if connRate != "" {
			if o.cfg.ConnRate, err = nft.ParseRate(connRate); err != nil {
				return nil, at("conn-rate", err)
			}
		}
	}
	if o.logFormat != "" && o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("--log-format %s: want text or json", input.Quote(o.logFormat))
	}
	if o.traceFor < 0 || o.traceFor > 0 && !o.trace {
		return nil, fmt.Errorf("--for %s: want a positive duration such as 10m, with --trace", o.traceFor)
	}
	rs, err := nft.Build(o.cfg)
	if err != nil {
		return nil, usageError(err)
	}
	o.ruleset = rs

	if cmd == "install" && !o.dryRun && !o.force {
		if err := lockoutGuard(o.cfg, sshConnection()); err != nil {
			return nil, err
		}
	}
	for _, name := range configKeys {
		o.compare = o.compare || given(fs, name) && !slices.Contains([]string{"netns", "table", "state-dir", "log-format", "metrics-listen"}, name)
	}
	o.compare = o.compare || *config != ""
	// render never reaches the kernel or the namespace, but an empty
	// namespace is refused all the same: it is never right.
	if given(fs, "netns") && (*netns == "" || cmd != "render") {
		if o.netns, err = netnsPath(*netns); err != nil {
			return nil, at("netns", err)
		}
		o.netnsArg = *netns
	}
	return o, nil
}

// appendPrefixes appends the prefixes of a list file to those given so far.
// A list of a million is taken as it is when it comes alone: copying it
// costs more than reading it (its addresses hold pointers, which the
// garbage collector must scan while they move).
func appendPrefixes(to, list []netip.Prefix) []netip.Prefix {
	if len(to) == 0 {
		return list
	}
	return append(to, list...)
}

// parsed ends a command whose command line did not parse: help asked for
// (printed; exit 0) or a usage error (exit 2). done is false when err is
// nil.
func parsed(cmd string, err error, stdout, stderr io.Writer) (code int, done bool) {
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, help(cmd))
		return exitOK, true
	}
	fmt.Fprintf(stderr, "ftpnft %s: %v\n", cmd, err)
	return exitUsage, true
}

// flagError says an error of the flag package in ftpnft's words: flags
// with two dashes, a suggestion for an unknown flag that is close to a
// real one, and no more than a line of a bad value.
func flagError(fs *flag.FlagSet, err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag --" + strings.TrimPrefix(name, "-")
		if near := nearestFlag(fs, strings.TrimPrefix(name, "-")); near != "" {
			msg += " (did you mean --" + near + "?)"
		}
	}
	const max = 200
	if len(msg) > max {
		msg = fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(msg[:max], ""), len(msg))
	}
	return errors.New(msg)
}

// flagSynonyms are what people type for ftpnft's flags.
var flagSynonyms = map[string]string{
	"namespace": "netns", "ns": "netns", "net-ns": "netns", "network-namespace": "netns",
	"port": "ports", "roles": "role", "dryrun": "dry-run", "dry": "dry-run",
	"masq": "masquerade", "sources": "source", "allowlist": "source-file",
}

// nearestFlag returns the flag of fs that name probably meant: a synonym,
// a flag that one starts with the other, or one at most two edits away.
func nearestFlag(fs *flag.FlagSet, name string) string {
	if len(name) > 64 {
		return ""
	}
	if s, ok := flagSynonyms[name]; ok && fs.Lookup(s) != nil {
		return s
	}
	best, bestDist := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		d := editDistance(name, f.Name)
		if strings.HasPrefix(f.Name, name) || strings.HasPrefix(name, f.Name) {
			d = min(d, 1)
		}
		if d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// given reports whether flag name was set, on the command line or by the
// config file: --netns "" is given, and is not the same as no --netns.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseEach parses each value of a repeatable flag, stopping at the first
// error; no values give nil.
func parseEach[T any](values []string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, v := range values {
		x, err := parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// sshConnection returns SSH_CONNECTION from the environment. When it is not
// set at all and ftpnft runs under sudo, which drops it from the
// environment by default, it is looked up in the nearest ancestor process
// that has it (the login shell). Set but empty means "not over SSH".
func sshConnection() string {
	if v, ok := os.LookupEnv("SSH_CONNECTION"); ok {
		return v
	}
	if os.Getenv("SUDO_USER") == "" {
		return ""
	}
	for pid := os.Getppid(); pid > 1; pid = parentOf(pid) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			return ""
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "SSH_CONNECTION="); ok {
				return v
			}
		}
	}
	return ""
}

// parentOf returns the parent process ID of pid, or 0 if unknown.
func parentOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "PID (COMM) STATE PPID ...": COMM may contain spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// lockoutGuard refuses a configuration whose input policy would not admit
// new SSH connections to the port of the SSH session ftpnft runs from
// (SSH_CONNECTION: "CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT"). It applies
// whatever --netns says: ftpnft cannot know which namespace the session's
// packets cross. The session itself survives (it is established); the next
// login would not.
func lockoutGuard(cfg nft.Config, sshConnection string) error {
	f := strings.Fields(sshConnection)
	if len(f) != 4 {
		return nil // not run over SSH
	}
	client, err1 := netip.ParseAddr(f[0])
	port, err2 := helper.ParsePort(f[3])
	if err1 != nil || err2 != nil {
		return nil
	}
	if cfg.AdmitsNew(client, port) {
		return nil
	}
	return fmt.Errorf("refusing to install: with --policy %s new SSH connections to port %d (this session, from %s) would be dropped, locking you out; add --allow tcp/%d, or --force to install anyway",
		cfg.Policy, port, client, port)
}

// The characters of names that ftpnft accepts. (Checked with strings.Trim
// rather than regular expressions, whose compilation at start-up cost every
// command more than all its checks.)
const (
	// netnsChars: what `ip netns add` accepts in a name.
	netnsChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
	// helperChars: the kernel's conntrack helper names.
	helperChars = "abcdefghijklmnopqrstuvwxyz0123456789_-"
)

func validNetnsName(s string) bool {
	return s != "" && len(s) <= 255 && s != "." && s != ".." && strings.Trim(s, netnsChars) == ""
}

// validHelperName accepts the empty name: all helpers.
func validHelperName(s string) bool {
	return len(s) <= 15 && strings.Trim(s, helperChars) == ""
}

// netnsPath resolves a namespace name (under /var/run/netns) or path and
// checks that it is a network namespace. The empty name is refused: a
// script's `--netns "$NS"` with NS unset must not mean this host.
func netnsPath(s string) (string, error) {
	if s == "" {
		return "", errors.New(`netns "": empty; name a namespace (see ` + "`ip netns list`" + `), or leave out --netns for this host's own`)
	}
	p := s
	if !strings.Contains(s, "/") {
		if !validNetnsName(s) {
			return "", fmt.Errorf("netns %s: not a valid namespace name", input.Quote(s))
		}
		p = filepath.Join("/var/run/netns", s)
	}
	f, err := netns.Open(p)
	switch {
	case errors.Is(err, os.ErrNotExist) && p != s:
		return "", fmt.Errorf("netns %s: no such network namespace (%s missing; see `ip netns list`)", input.Quote(s), p)
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("netns %s: no such network namespace", input.Quote(s))
	case errors.Is(err, os.ErrPermission):
		return p, nil // not the user's input: the command fails on it with exit 1
	case errors.Is(err, netns.ErrNotNetNS):
		return "", fmt.Errorf("netns %s: %w", input.Quote(s), err)
	case err != nil:
		var errno syscall.Errno // the path is the user's: say it once, clipped
		if errors.As(err, &errno) {
			err = errno
		}
		return "", fmt.Errorf("netns %s: %w", input.Quote(s), err)
	}
	f.Close()
	return p, nil
}

// fail prints a runtime error with what to do about it and returns exit 1.
func fail(stderr io.Writer, cmd string, err error) int {
	if h := hint(err); h != "" {
		fmt.Fprintf(stderr, "ftpnft %s: %v (%s)\n", cmd, err, h)
	} else {
		fmt.Fprintf(stderr, "ftpnft %s: %v\n", cmd, err)
	}
	return exitFailure
}

// hint returns one line that tells a person what to do about an error, in
// the command's words, or "" when the error says enough. The kernel
// interface that failed differs: conntrack's netlink interface for the
// conntrack package's errors (expectations, doctor --trace's watch),
// nf_tables for the rest.
func hint(err error) string {
	var ct *conntrack.Error
	fromConntrack := errors.As(err, &ct)
	switch {
	case errors.Is(err, nft.ErrNotOwned):
		return "choose another name with --table, or remove that table yourself"
	case errors.Is(err, os.ErrPermission):
		return "run as root or with CAP_NET_ADMIN"
	case errors.Is(err, errors.ErrUnsupported) && fromConntrack:
		return "this kernel lacks conntrack's netlink interface (CONFIG_NF_CT_NETLINK) or the ftp conntrack helper"
	case errors.Is(err, errors.ErrUnsupported):
		return "this kernel lacks nf_tables or the ftp conntrack helper (CONFIG_NF_TABLES, CONFIG_NFT_CT, CONFIG_NF_CONNTRACK_FTP)"
	case errors.Is(err, os.ErrNotExist) && fromConntrack:
		return "check the namespace with `ip netns list`"
	case errors.Is(err, os.ErrNotExist):
		return "check the namespace with `ip netns list`; a missing ct helper type means the kernel lacks nf_conntrack_ftp"
	}
	return ""
}

// usageError says an invalid configuration in the command's words: the
// flag that adds a missing role.
func usageError(err error) error {
	var re *nft.RoleError
	if !errors.As(err, &re) {
		return err
	}
	if len(re.Needs) == 1 {
		return fmt.Errorf("%s (add --role %s)", re.What, re.Needs[0])
	}
	return fmt.Errorf("%s (add role %s with --role)", re.What, re.Roles())
}

func install(ctx context.Context, o *cliOptions, stdout, stderr io.Writer) int {
	if o.dryRun {
		p, err := nft.PlanApply(ctx, o.ruleset, o.nftOptions()...)
		if err != nil {
			return fail(stderr, o.cmd, err)
		}
		fmt.Fprintf(stdout, "# ftpnft install would send %s\n", planSummary(p))
		for _, s := range p.Steps() {
			fmt.Fprintln(stdout, s)
		}
		return exitOK
	}
	capa, err := helper.Probe("/")
	if err == nil && !capa.Available {
		return fail(stderr, o.cmd, fmt.Errorf("kernel has no FTP conntrack helper: %w", errors.ErrUnsupported))
	}
	res, err := nft.Apply(ctx, o.ruleset, o.nftOptions()...)
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	var what string
	switch p := res.Plan; {
	case !res.Changed:
		what = "unchanged (already installed; nothing sent)"
	case p.Create:
		what = "installed"
	case !res.Repaired && p.Counts == (nft.Counts{}):
		what = "unchanged (it held this configuration; ftpnft's stamp was added)"
	case res.Repaired && p.Counts == (nft.Counts{}):
		what = "repaired (it held this configuration, but its stamp had been changed or lost: the stamp was written again)"
	case res.Repaired:
		what = "repaired (it had been changed by hand or by another program; " + p.Counts.String() + ")"
	default:
		what = "updated (" + p.Counts.String() + ")"
	}
	fmt.Fprintf(stdout, "table inet %s %s: helper %q on tcp ports %s, roles %s, policy %s%s\n",
		o.cfg.Table, what, nft.HelperObject, join(o.cfg.Ports), join(o.cfg.Roles), o.cfg.Policy, natSummary(o.cfg.DNAT, o.cfg.Masquerade))
	if res.StateErr != nil {
		fmt.Fprintf(stderr, "ftpnft %s: warning: %v (the next change of a large set reads it back from the kernel first)\n", o.cmd, res.StateErr)
	}
	warnCoexistence(stderr, o.cmd, coexistence(ctx, o.cfg, o.nftOptions()))
	if tables, err := helper.LegacyTables(o.netns); err == nil && len(tables) > 0 {
		fmt.Fprintf(stderr, "ftpnft %s: warning: %s\n", o.cmd, legacyWarning(tables))
	}
	return exitOK
}

// planSummary says in a line what a plan does.
func planSummary(p *nft.Plan) string {
	switch {
	case p.Empty():
		return "nothing: the table holds this configuration already"
	case p.Create:
		return fmt.Sprintf("a new table inet %s (%s)", p.Table, p.Counts)
	case p.Repair:
		return fmt.Sprintf("a repair of table inet %s, changed by hand or by another program (%s)", p.Table, p.Counts)
	}
	return fmt.Sprintf("changes to table inet %s (%s)", p.Table, p.Counts)
}

// defaultStateDir is where the command records the address sets it
// applied: $FTPNFT_STATE_DIR, else /var/lib/ftpnft.
func defaultStateDir() string {
	if dir := os.Getenv("FTPNFT_STATE_DIR"); dir != "" {
		return dir
	}
	return "/var/lib/ftpnft"
}

// coexistence reads the other firewalls of the namespace for cfg. A
// failure to read them is a finding of its own.
func coexistence(ctx context.Context, cfg nft.Config, opts []nft.Option) []nft.Finding {
	fs, err := nft.Coexistence(ctx, cfg, opts...)
	if err != nil {
		return []nft.Finding{{Traffic: "could not read the other tables: " + err.Error()}}
	}
	return fs
}

// warnCoexistence prints what another firewall does to FTP, one warning a
// line on stderr.
func warnCoexistence(stderr io.Writer, cmd string, fs []nft.Finding) {
	for _, f := range fs {
		if f.Table == "" {
			fmt.Fprintf(stderr, "ftpnft %s: warning: %s\n", cmd, f.Traffic)
			continue
		}
		fmt.Fprintf(stderr, "ftpnft %s: warning: %s\n", cmd, f)
	}
}

func uninstall(ctx context.Context, o *cliOptions, stdout, stderr io.Writer) int {
	removed, err := nft.Remove(ctx, o.cfg.Table, o.nftOptions()...)
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	if removed {
		fmt.Fprintf(stdout, "table inet %s removed\n", o.cfg.Table)
	} else {
		fmt.Fprintf(stdout, "table inet %s not present; nothing to remove\n", o.cfg.Table)
	}
	return exitOK
}

// statusReport is the JSON form of status.
type statusReport struct {
	*nft.Status
	// Compared is true when a configuration was given to compare with;
	// ConfigDifferences then lists the keys that differ.
	Compared          bool                `json:"compared"`
	ConfigDifferences []nft.KeyDifference `json:"config_differences"`
	Kernel            helper.Capability   `json:"kernel"`
	Warnings          []string            `json:"warnings"`
	Coexistence       []nft.Finding       `json:"coexistence"`
}

// warnings lists what weakens the installed policy: kernel helper
// parameters and a related range that includes privileged ports.
func warnings(st *nft.Status, capa helper.Capability) []string {
	w := []string{}
	if capa.Loose {
		w = append(w, "nf_conntrack_ftp loose=1: the helper expects data connections to addresses other than the peers' (FTP bounce); load it with loose=0")
	}
	if capa.AutoAssign {
		w = append(w, fmt.Sprintf("automatic helper assignment is on (net.netfilter.nf_conntrack_helper=1): every connection to ports=%s gets the ftp helper, not only those ftpnft assigns; set it to 0", capa.Ports))
	}
	if st.Installed && st.RelatedPorts.Lo != 0 && st.RelatedPorts.Lo < 1024 {
		w = append(w, fmt.Sprintf("related data connections may go to privileged ports (--related-ports %s): a client can make the helper open them (FTP bounce, NAT slipstreaming)", st.RelatedPorts))
	}
	return w
}

// readTable reads ftpnft's table, compared with the configuration when one
// was given, and returns with it the configuration FTP is expected to work
// under: the one given, or else the one installed.
func readTable(ctx context.Context, o *cliOptions) (*nft.Status, nft.Config, error) {
	if o.compare {
		st, err := nft.ReadStatus(ctx, o.ruleset, o.nftOptions()...)
		return st, o.cfg, err
	}
	st, err := nft.ReadInstalled(ctx, o.cfg.Table, o.nftOptions()...)
	if err != nil {
		return nil, o.cfg, err
	}
	// The address lists do not change how FTP is expected to work, and a
	// million ranges take long to turn back into prefixes.
	lists := *st
	lists.Sources, lists.Blocked = nil, nil
	if cfg := lists.Config(); st.Installed && st.Owned && cfg.Validate() == nil {
		return st, cfg, nil
	}
	return st, o.cfg, nil
}

// status shows the table: what is installed and, when a configuration was
// given, whether it matches. Exit 0 when the table is ftpnft's, as ftpnft
// made it and (when compared) matching; 1 otherwise, so that monitoring
// need not parse the output.
func status(ctx context.Context, o *cliOptions, stdout, stderr io.Writer) int {
	st, cfg, err := readTable(ctx, o)
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	capa, err := helper.Probe("/")
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	rep := statusReport{Status: st, Compared: o.compare, ConfigDifferences: []nft.KeyDifference{},
		Kernel: capa, Warnings: warnings(st, capa), Coexistence: []nft.Finding{}}
	if tables, err := helper.LegacyTables(o.netns); err == nil && len(tables) > 0 {
		rep.Warnings = append(rep.Warnings, legacyWarning(tables))
	}
	if st.Installed && st.Owned {
		if o.compare && !st.Matches { // a table that matches differs in no key
			rep.ConfigDifferences = append(rep.ConfigDifferences, nft.Compare(st.Config(), o.cfg)...)
		}
		rep.Coexistence = append(rep.Coexistence, coexistence(ctx, cfg, o.nftOptions())...)
	}
	if o.json {
		b, err := json.Marshal(rep)
		if err != nil {
			return fail(stderr, o.cmd, err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		writeStatus(stdout, rep)
	}
	warnCoexistence(stderr, o.cmd, rep.Coexistence)
	if st.Installed && st.Owned && st.Matches && !st.Modified {
		return exitOK
	}
	return exitFailure
}

func writeStatus(w io.Writer, rep statusReport) {
	st, capa := rep.Status, rep.Kernel
	switch {
	case !st.Installed:
		fmt.Fprintf(w, "table inet %s: not installed\n", st.Table)
	case !st.Owned:
		fmt.Fprintf(w, "table inet %s: exists but was not created by ftpnft\n", st.Table)
	case st.Modified:
		fmt.Fprintf(w, "table inet %s: installed, changed by hand or by another program since ftpnft wrote it (run install to repair)\n", st.Table)
	case !rep.Compared && st.Matches:
		fmt.Fprintf(w, "table inet %s: installed, matches the configuration it was installed with\n", st.Table)
	case st.Matches:
		fmt.Fprintf(w, "table inet %s: installed, matches the configuration\n", st.Table)
	default:
		fmt.Fprintf(w, "table inet %s: installed, differs from the configuration (run install to update)\n", st.Table)
	}
	for _, d := range rep.ConfigDifferences {
		fmt.Fprintf(w, "  differs: %s\n", d)
	}
	if len(rep.ConfigDifferences) == 0 {
		for _, d := range st.Differences {
			fmt.Fprintf(w, "  differs: %s\n", d)
		}
	}
	if st.Installed && st.Owned {
		for _, h := range st.Helpers {
			fmt.Fprintf(w, "helper:   %s (type %q, protocol %s)\n", h.Name, h.Type, h.Protocol)
		}
		fmt.Fprintf(w, "roles:    %s\n", join(st.Roles))
		fmt.Fprintf(w, "ports:    %s\n", join(st.Ports))
		if st.Policy != "" {
			fmt.Fprintf(w, "policy:   %s\n", st.Policy)
		}
		if len(st.Allow) > 0 {
			fmt.Fprintf(w, "allow:    %s\n", join(st.Allow))
		}
		for _, d := range st.DNAT {
			fmt.Fprintf(w, "dnat:     this host's port %d -> %s\n", d.ListenPort, d.To)
		}
		for _, m := range st.Masquerade {
			fmt.Fprintf(w, "masquerade: out of %s\n", m)
		}
		if !st.RelatedPorts.IsZero() {
			fmt.Fprintf(w, "related:  ftp data to ports %s\n", st.RelatedPorts)
		}
		if !st.PassivePorts.IsZero() {
			fmt.Fprintf(w, "passive:  ports %s open (FTPS)\n", st.PassivePorts)
		}
		if len(st.Sources) > 0 {
			fmt.Fprintf(w, "sources:  %d ranges may open control connections (%s)\n", len(st.Sources), abbreviate(st.Sources, 4))
		}
		if len(st.Blocked) > 0 {
			fmt.Fprintf(w, "blocked:  %d ranges dropped before anything else (%s)\n", len(st.Blocked), abbreviate(st.Blocked, 4))
		}
		if st.Bans > 0 {
			fmt.Fprintf(w, "bans:     %d (ftpnft bans lists them)\n", st.Bans)
		}
		if st.MaxConnPerSource > 0 {
			fmt.Fprintf(w, "limit:    %d control connections per source\n", st.MaxConnPerSource)
		}
		if !st.ConnRate.IsZero() {
			fmt.Fprintf(w, "rate:     %s new control connections per source\n", st.ConnRate)
		}
		fmt.Fprintf(w, "counters:\n")
		chainWidth, ruleWidth := 0, 0
		for _, c := range st.Counters {
			chainWidth, ruleWidth = max(chainWidth, len(c.Chain)), max(ruleWidth, len(c.Rule))
		}
		for _, c := range st.Counters {
			fmt.Fprintf(w, "  %-*s %-*s %10d packets %12d bytes\n", chainWidth, c.Chain, ruleWidth, c.Rule, c.Packets, c.Bytes)
		}
	}
	if capa.Available {
		fmt.Fprintf(w, "kernel:   ftp helper available (nf_conntrack_ftp ports=%s loose=%t)\n", capa.Ports, capa.Loose)
	} else {
		fmt.Fprintf(w, "kernel:   ftp helper NOT available (nf_conntrack_ftp missing)\n")
	}
	for _, warning := range rep.Warnings {
		fmt.Fprintf(w, "warning:  %s\n", warning)
	}
}

// join lists values comma separated, or "none".
func join[T any](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = fmt.Sprint(v)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// abbreviate lists the first n values and how many more there are.
func abbreviate[T any](values []T, n int) string {
	if len(values) <= n {
		return join(values)
	}
	return fmt.Sprintf("%s, … %d more", join(values[:n]), len(values)-n)
}

// natSummary describes port forwards and masquerade for install's line.
func natSummary(dnat []nft.DNAT, masquerade []string) string {
	var s string
	if len(dnat) > 0 {
		s += ", dnat " + join(dnat)
	}
	if len(masquerade) > 0 {
		s += ", masquerade " + join(masquerade)
	}
	return s
}
