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
	"strconv"
	"strings"
	"syscall"

	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/internal/input"
	"github.com/ftpnft/ftpnft/internal/nlio"
	"github.com/ftpnft/ftpnft/nft"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the kernel or the system said no
	exitUsage   = 2 // bad command line or input; nothing was changed
)

const usage = `ftpnft makes FTP work through an nftables firewall.

It creates the table "inet ftpnft" with a ct helper object of type "ftp",
assigns it to NEW connections to the FTP control ports, and installs a
policy that admits RELATED connections only when the ftp helper expected
them: on input for an FTP server or client host, on forward for a router,
with port forwarding (DNAT) to inner servers and masquerade for inner
clients.

Usage:
  ftpnft selftest            prove on this kernel, in throwaway namespaces,
                             that FTP works through ftpnft (and not without it)
  ftpnft install   [flags]   create or update the table (one atomic batch; idempotent)
  ftpnft uninstall [flags]   remove the table (removing nothing succeeds)
  ftpnft status    [flags]   show the table as the kernel holds it
  ftpnft render    [flags]   print what install would create, in nft syntax
  ftpnft expectations [--helper ftp] [--json] [--watch]
                             list the kernel's conntrack expectations, or watch
                             them and the data connections they admit
  ftpnft help                show this help

Flags (every command but selftest):
  --netns NAME|PATH   work in a network namespace: a name under /var/run/netns
                      or a path such as /proc/PID/ns/net

Flags (install, uninstall, status, render):
  --table NAME        the table's name in family inet (default "ftpnft")
  --config FILE       read these flags from a YAML file (see
                      examples/ftpnft.yaml); flags on the command line
                      override it

Flags (install, status, render):
  --role LIST         what this host does with FTP, comma separated
                      (default "server"):
                        server  FTP servers run here: inbound control
                                connections get the helper; input admits them
                        client  this host opens FTP connections: outbound
                                ones get the helper, so active-mode data
                                connections come in as RELATED
                        router  FTP passes through: forwarded control
                                connections get the helper; a forward chain
                                applies the policy
  --ports LIST        FTP control ports, comma separated (default "21")
  --policy drop|accept
                      policy of the input chain (server, client) and the
                      forward chain (router) (default "drop")
  --allow PROTO/PORT  also admit this host's service, e.g. tcp/22, on input
                      (it is not forwarded); repeatable
  --dnat LISTENPORT=ADDR:PORT
                      (router) forward FTP control connections to this
                      host's LISTENPORT to an inner server, with nf_nat_ftp
                      rewriting its PASV/EPSV replies; IPv6 as [ADDR]:PORT;
                      repeatable
  --masquerade IFACE  (router) masquerade traffic leaving through IFACE, so
                      inner clients' active FTP works (nf_nat_ftp rewrites
                      PORT/EPRT); repeatable

  --related-ports LO-HI
                      ports that data connections the ftp helper expected may
                      go to (default "1024-65535": never a privileged port)
  --passive-ports LO-HI
                      (server) also admit new connections to this passive
                      range, for FTPS, whose encrypted control channel the
                      helper cannot read; from --source networks only, if given
  --source CIDR       (server, router) only these networks may open control
                      connections; IPv4 or IPv6, repeatable; held in an
                      interval set (one lookup for any number)
  --source-file FILE  as --source, one CIDR per line, '#' comments; repeatable
  --max-conn-per-source N
                      (server, router) refuse (TCP reset) a control connection
                      from a source that already has N (default 0: no limit)
  --conn-rate N/second|N/minute
                      (server, router) drop new control connections from a
                      source above this rate

Flags (install):
  --dry-run           print the ruleset instead of installing it
  --force             install even if the policy would not admit new SSH
                      connections to the port of this SSH session

Flags (status):
  --json              print one JSON object

Flags (expectations):
  --helper NAME       only this kernel helper's expectations (default "ftp";
                      "" for all)
  --watch             stream events until interrupted: new, destroy, related
                      (a data connection admitted as expected), lost
  --json              a JSON array, in the kernel's order (the table is sorted);
                      with --watch one JSON object per line

Exit status: 0 ok, 1 failure (permission, kernel), 2 usage or invalid input.
A failed install or uninstall changes nothing.
`

// run is the whole command line program; main only exits with its result.
// Every write to stdout is checked: output that could not be written (a
// full disk, a closed pipe) fails the command with exit 1.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	out := &checkedWriter{w: stdout}
	code := dispatch(ctx, args, out, stderr)
	if code == exitOK && out.err != nil {
		fmt.Fprintf(stderr, "ftpnft %s: write output: %v\n", args[0], out.err)
		return exitFailure
	}
	return code
}

// checkedWriter keeps the first error of its writes, and writes nothing
// after it.
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.err = err
	return n, err
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
		fmt.Fprint(stdout, usage)
		return exitOK
	case "install", "uninstall", "status", "render":
	case "expectations":
		return expectations(ctx, rest, stdout, stderr)
	case "selftest":
		return selfTest(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "ftpnft: unknown command %s (try: ftpnft help)\n", input.Quote(cmd))
		return exitUsage
	}

	o, err := parseFlags(cmd, rest, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ftpnft %s: %v\n", cmd, err)
		return exitUsage
	}

	switch cmd {
	case "render":
		fmt.Fprint(stdout, o.ruleset.Render())
		return exitOK
	case "install":
		return install(o, stdout, stderr)
	case "uninstall":
		return uninstall(o, stdout, stderr)
	default:
		return status(o, stdout, stderr)
	}
}

// cliOptions is a parsed command line.
type cliOptions struct {
	cmd     string
	netns   string // path, "" for the current namespace
	cfg     nft.Config
	ruleset *nft.Ruleset
	dryRun  bool
	force   bool
	json    bool
}

func (o *cliOptions) nftOptions() []nft.Option {
	if o.netns == "" {
		return nil
	}
	return []nft.Option{nft.WithNetNS(o.netns)}
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
	var ports, policy, roles, relatedPorts, passivePorts, connRate string
	var maxConn uint
	var allow, dnat, masquerade, sources, sourceFiles listFlag
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
		fs.UintVar(&maxConn, "max-conn-per-source", 0, "")
		fs.StringVar(&connRate, "conn-rate", "", "")
	}
	if cmd == "install" {
		fs.BoolVar(&o.dryRun, "dry-run", false, "")
		fs.BoolVar(&o.force, "force", false, "")
	}
	if cmd == "status" {
		fs.BoolVar(&o.json, "json", false, "")
	}
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %s", input.Quote(fs.Arg(0)))
	}
	if *config != "" {
		if err := applyConfig(fs, *config); err != nil {
			return nil, err
		}
	}

	if cmd != "uninstall" {
		var err error
		if o.cfg.Roles, err = nft.ParseRoles(roles); err != nil {
			return nil, err
		}
		if o.cfg.Ports, err = helper.ParsePorts(ports); err != nil {
			return nil, err
		}
		if o.cfg.Policy, err = nft.ParsePolicy(policy); err != nil {
			return nil, err
		}
		if o.cfg.Allow, err = parseEach(allow, nft.ParseService); err != nil {
			return nil, err
		}
		if o.cfg.DNAT, err = parseEach(dnat, nft.ParseDNAT); err != nil {
			return nil, err
		}
		if o.cfg.Masquerade, err = parseEach(masquerade, nft.ParseInterface); err != nil {
			return nil, err
		}
		if o.cfg.RelatedPorts, err = nft.ParsePortRange(relatedPorts); err != nil {
			return nil, fmt.Errorf("--related-ports: %w", err)
		}
		if passivePorts != "" {
			if o.cfg.PassivePorts, err = nft.ParsePortRange(passivePorts); err != nil {
				return nil, fmt.Errorf("--passive-ports: %w", err)
			}
		}
		if o.cfg.Sources, err = parseEach(sources, nft.ParseSource); err != nil {
			return nil, err
		}
		for _, f := range sourceFiles {
			ps, err := nft.ReadSourceFile(f)
			if err != nil {
				return nil, err
			}
			if len(ps) == 0 {
				return nil, fmt.Errorf("source file %s: no sources (an empty allowlist would admit everyone)", f)
			}
			o.cfg.Sources = append(o.cfg.Sources, ps...)
		}
		if maxConn > 1<<31 {
			return nil, fmt.Errorf("--max-conn-per-source %d: want 1 to %d (0: no limit)", maxConn, 1<<31)
		}
		o.cfg.MaxConnPerSource = uint32(maxConn)
		if connRate != "" {
			if o.cfg.ConnRate, err = nft.ParseRate(connRate); err != nil {
				return nil, err
			}
		}
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
	// A dry run never reaches the kernel, but an empty namespace is refused
	// all the same: it would be wrong without --dry-run too.
	if given(fs, "netns") && (*netns == "" || !o.dryRun) {
		if o.netns, err = netnsPath(*netns); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// flagError clips an error of the flag package, which repeats a bad flag
// or value whole, to a line.
func flagError(err error) error {
	const max = 200
	if err == nil {
		return nil
	}
	if msg := err.Error(); len(msg) > max && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%s… (%d bytes)", strings.ToValidUTF8(msg[:max], ""), len(msg))
	}
	return err
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
	f, err := nlio.OpenNetNS(p)
	switch {
	case errors.Is(err, os.ErrNotExist) && p != s:
		return "", fmt.Errorf("netns %s: no such network namespace (%s missing; see `ip netns list`)", input.Quote(s), p)
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("netns %s: no such network namespace", input.Quote(s))
	case errors.Is(err, os.ErrPermission):
		return p, nil // not the user's input: the command fails on it with exit 1
	case errors.Is(err, nlio.ErrNotNetNS):
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
	if h := hint(cmd, err); h != "" {
		fmt.Fprintf(stderr, "ftpnft %s: %v (%s)\n", cmd, err, h)
	} else {
		fmt.Fprintf(stderr, "ftpnft %s: %v\n", cmd, err)
	}
	return exitFailure
}

// hint returns one line that tells a person what to do about an error of
// command cmd, in the command's words, or "" when the error says enough.
// The kernel interface that cmd needs differs: nf_tables for the table,
// conntrack's netlink interface for expectations.
func hint(cmd string, err error) string {
	switch {
	case errors.Is(err, nft.ErrNotOwned):
		return "choose another name with --table, or remove that table yourself"
	case errors.Is(err, os.ErrPermission):
		return "run as root or with CAP_NET_ADMIN"
	case errors.Is(err, errors.ErrUnsupported) && cmd == "expectations":
		return "this kernel lacks conntrack's netlink interface (CONFIG_NF_CT_NETLINK) or the ftp conntrack helper"
	case errors.Is(err, errors.ErrUnsupported):
		return "this kernel lacks nf_tables or the ftp conntrack helper (CONFIG_NF_TABLES, CONFIG_NFT_CT, CONFIG_NF_CONNTRACK_FTP)"
	case errors.Is(err, os.ErrNotExist) && cmd == "expectations":
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

func install(o *cliOptions, stdout, stderr io.Writer) int {
	if o.dryRun {
		fmt.Fprint(stdout, o.ruleset.Render())
		return exitOK
	}
	capa, err := helper.Probe("/")
	if err == nil && !capa.Available {
		return fail(stderr, o.cmd, fmt.Errorf("kernel has no FTP conntrack helper: %w", errors.ErrUnsupported))
	}
	res, err := nft.Apply(context.Background(), o.ruleset, o.nftOptions()...)
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	what := "installed"
	switch {
	case !res.Changed:
		what = "unchanged (already installed; nothing sent)"
	case res.Repaired:
		what = "repaired (it had been changed by hand or by another program)"
	case res.Replaced:
		what = "replaced"
	}
	fmt.Fprintf(stdout, "table inet %s %s: helper %q on tcp ports %s, roles %s, policy %s%s\n",
		o.cfg.Table, what, nft.HelperObject, join(o.cfg.Ports), join(o.cfg.Roles), o.cfg.Policy, natSummary(o.cfg.DNAT, o.cfg.Masquerade))
	return exitOK
}

func uninstall(o *cliOptions, stdout, stderr io.Writer) int {
	removed, err := nft.Remove(context.Background(), o.cfg.Table, o.nftOptions()...)
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
	Kernel   helper.Capability `json:"kernel"`
	Warnings []string          `json:"warnings"`
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

func status(o *cliOptions, stdout, stderr io.Writer) int {
	st, err := nft.ReadStatus(context.Background(), o.ruleset, o.nftOptions()...)
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	capa, err := helper.Probe("/")
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	if o.json {
		b, err := json.Marshal(statusReport{Status: st, Kernel: capa, Warnings: warnings(st, capa)})
		if err != nil {
			return fail(stderr, o.cmd, err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	writeStatus(stdout, st, capa)
	return exitOK
}

func writeStatus(w io.Writer, st *nft.Status, capa helper.Capability) {
	switch {
	case !st.Installed:
		fmt.Fprintf(w, "table inet %s: not installed\n", st.Table)
	case !st.Owned:
		fmt.Fprintf(w, "table inet %s: exists but was not created by ftpnft\n", st.Table)
	case st.Matches:
		fmt.Fprintf(w, "table inet %s: installed, matches the configuration\n", st.Table)
	case st.Modified:
		fmt.Fprintf(w, "table inet %s: installed, changed by hand or by another program since ftpnft wrote it (run install to repair)\n", st.Table)
	default:
		fmt.Fprintf(w, "table inet %s: installed, differs from the configuration (run install to update)\n", st.Table)
	}
	for _, d := range st.Differences {
		fmt.Fprintf(w, "  differs: %s\n", d)
	}
	if st.Installed && st.Owned {
		for _, h := range st.Helpers {
			fmt.Fprintf(w, "helper:   %s (type %q, protocol %s)\n", h.Name, h.Type, h.Protocol)
		}
		fmt.Fprintf(w, "roles:    %s\n", join(st.Roles))
		fmt.Fprintf(w, "ports:    %s\n", join(st.Ports))
		fmt.Fprintf(w, "policy:   %s\n", st.Policy)
		for _, d := range st.DNAT {
			fmt.Fprintf(w, "dnat:     this host's port %d -> %s\n", d.ListenPort, d.To)
		}
		for _, m := range st.Masquerade {
			fmt.Fprintf(w, "masquerade: out of %s\n", m)
		}
		fmt.Fprintf(w, "related:  ftp data to ports %s\n", st.RelatedPorts)
		if !st.PassivePorts.IsZero() {
			fmt.Fprintf(w, "passive:  ports %s open (FTPS)\n", st.PassivePorts)
		}
		if len(st.Sources) > 0 {
			fmt.Fprintf(w, "sources:  %d ranges may open control connections (%s)\n", len(st.Sources), abbreviate(st.Sources, 4))
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
	for _, warning := range warnings(st, capa) {
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
