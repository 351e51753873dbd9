package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/nft"
)

// A check is one thing doctor looked at.
type check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, warn, fail
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// The statuses of a check.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "fail"
)

// doctor checks, one after the other, what FTP through the firewall needs:
// the kernel's helper, ftpnft's table, the helper's assignment, the other
// firewalls, the conntrack tables and the sysctls. Exit 0 when no check
// failed, 1 when one did.
func doctor(ctx context.Context, o *cliOptions, stdout, stderr io.Writer) int {
	if o.trace {
		return runTrace(ctx, o, stdout, stderr)
	}
	var checks []check
	add := func(c check) { checks = append(checks, c) }

	add(kernelCheck())

	st, cfg, err := readTable(ctx, o)
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	add(tableCheck(o, st))
	add(assignmentCheck(o, st, cfg))

	for _, c := range firewallChecks(coexistence(ctx, cfg, o.nftOptions())) {
		add(c)
	}

	add(legacyCheck(o.netns))
	sys, sysErr := helper.ReadSysctls(o.netns)
	if sysErr != nil {
		add(check{Name: "sysctls", Status: statusWarn, Detail: "could not read the sysctls: " + sysErr.Error()})
	}
	usage, err := conntrack.ReadUsage(ctx, o.conntrackOptions()...)
	if err != nil {
		add(check{Name: "conntrack", Status: statusWarn, Detail: "could not read conntrack: " + err.Error()})
	} else {
		for _, c := range conntrackChecks(usage, sys) {
			add(c)
		}
	}
	if sysErr == nil {
		for _, c := range sysctlChecks(sys, cfg) {
			add(c)
		}
	}

	failed := 0
	for _, c := range checks {
		if c.Status == statusFail {
			failed++
		}
	}
	if o.json {
		b, err := json.Marshal(struct {
			Checks []check `json:"checks"`
		}{checks})
		if err != nil {
			return fail(stderr, o.cmd, err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		writeChecks(stdout, checks)
	}
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

func writeChecks(w io.Writer, checks []check) {
	counts := map[string]int{}
	for _, c := range checks {
		counts[c.Status]++
		label := map[string]string{statusOK: "[ok]  ", statusWarn: "[warn]", statusFail: "[FAIL]"}[c.Status]
		fmt.Fprintf(w, "%s %s: %s\n", label, c.Name, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(w, "       fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(w, "doctor: %d ok, %d warnings, %d failed\n", counts[statusOK], counts[statusWarn], counts[statusFail])
}

func kernelCheck() check {
	c := check{Name: "kernel helper"}
	capa, err := helper.Probe("/")
	switch {
	case err != nil:
		c.Status, c.Detail = statusWarn, err.Error()
	case !capa.Available:
		c.Status, c.Detail = statusFail, "nf_conntrack_ftp is neither loaded nor built in"
		c.Fix = "modprobe nf_conntrack_ftp (and nf_nat_ftp for NAT), or a kernel with CONFIG_NF_CONNTRACK_FTP"
	case capa.Loose:
		c.Status, c.Detail = statusWarn, fmt.Sprintf("nf_conntrack_ftp ports=%s loose=1: the helper expects data connections to addresses other than the peers' (FTP bounce)", capa.Ports)
		c.Fix = "load nf_conntrack_ftp with loose=0"
	case capa.AutoAssign:
		c.Status, c.Detail = statusWarn, "automatic helper assignment is on (net.netfilter.nf_conntrack_helper=1)"
		c.Fix = "sysctl -w net.netfilter.nf_conntrack_helper=0"
	default:
		c.Status, c.Detail = statusOK, fmt.Sprintf("nf_conntrack_ftp available (ports=%s loose=0)", capa.Ports)
	}
	return c
}

func tableCheck(o *cliOptions, st *nft.Status) check {
	c := check{Name: "table"}
	install := "ftpnft install" + o.netnsFlag()
	switch {
	case !st.Installed:
		c.Status, c.Detail, c.Fix = statusFail, fmt.Sprintf("inet %s is not installed: nothing assigns the ftp helper", st.Table), install
	case !st.Owned:
		c.Status, c.Detail = statusFail, fmt.Sprintf("inet %s exists but was not created by ftpnft", st.Table)
		c.Fix = "choose another name with --table, or remove that table yourself"
	case st.Modified:
		c.Status, c.Detail, c.Fix = statusFail, fmt.Sprintf("inet %s was changed by hand or by another program: %s", st.Table, strings.Join(st.Differences, "; ")), install+" (repairs it)"
	case o.compare && !st.Matches:
		var ds []string
		for _, d := range nft.Compare(st.Config(), o.cfg) {
			ds = append(ds, d.String())
		}
		if len(ds) == 0 {
			ds = st.Differences
		}
		c.Status, c.Detail, c.Fix = statusFail, fmt.Sprintf("inet %s differs from the configuration: %s", st.Table, strings.Join(ds, "; ")), install+" with the same flags"
	default:
		c.Status, c.Detail = statusOK, fmt.Sprintf("inet %s installed: roles %s, ports %s, policy %s", st.Table, join(st.Roles), join(st.Ports), st.Policy)
	}
	return c
}

// assignmentCheck: the helper is assigned on every control port, in
// prerouting for a server or router and in output for a client.
func assignmentCheck(o *cliOptions, st *nft.Status, cfg nft.Config) check {
	c := check{Name: "helper assignment"}
	if !st.Installed || !st.Owned {
		c.Status, c.Detail = statusFail, "no table of ftpnft's assigns the helper"
		return c
	}
	var missing []uint16
	for _, p := range cfg.Ports {
		if !slices.Contains(st.Ports, p) {
			missing = append(missing, p)
		}
	}
	install := "ftpnft install" + o.netnsFlag()
	switch {
	case len(missing) > 0:
		c.Status, c.Detail = statusFail, "control ports without the helper: "+join(missing)
		c.Fix = install + " --ports " + join(cfg.Ports) + " (and the flags you installed with)"
	case cfg.Has(nft.RoleClient) && !slices.Contains(st.Roles, nft.RoleClient):
		c.Status, c.Detail = statusFail, "this host's own FTP connections (role client) do not get the helper: active mode fails"
		c.Fix = install + " --role " + join(cfg.Roles) + " (and the flags you installed with)"
	default:
		where := []string{}
		if cfg.Has(nft.RoleServer) || cfg.Has(nft.RoleRouter) {
			where = append(where, "prerouting")
		}
		if cfg.Has(nft.RoleClient) {
			where = append(where, "output")
		}
		c.Status, c.Detail = statusOK, fmt.Sprintf("new connections to ports %s get the helper in %s", join(cfg.Ports), strings.Join(where, " and "))
	}
	return c
}

// firewallChecks turns the coexistence findings into checks: a certain drop
// fails, a suspicion or a service that ftpnft's policy would drop warns.
func firewallChecks(findings []nft.Finding) []check {
	if len(findings) == 0 {
		return []check{{Name: "other firewalls", Status: statusOK, Detail: "no other table's base chain drops FTP's control or data connections"}}
	}
	var out []check
	for _, f := range findings {
		if f.Table == "" { // the other tables could not be read
			out = append(out, check{Name: "other firewalls", Status: statusWarn, Detail: f.Traffic})
			continue
		}
		c := check{Name: "other firewall", Fix: f.Fix}
		detail := f.String()
		if i := strings.LastIndex(detail, "; fix: "); i >= 0 {
			detail = detail[:i]
		}
		c.Detail = detail
		c.Status = statusWarn
		if f.Certain && !f.DroppedByFtpnft {
			c.Status = statusFail
		}
		out = append(out, c)
	}
	return out
}

// conntrackChecks: the tables' fill against their limits, and control
// connections that led to nothing.
func conntrackChecks(u conntrack.Usage, sys helper.Sysctls) []check {
	var out []check
	c := check{Name: "conntrack table", Status: statusOK, Detail: fmt.Sprintf("%d of %d connections tracked", u.Entries, u.MaxEntries)}
	if u.MaxEntries > 0 {
		switch use := float64(u.Entries) / float64(u.MaxEntries); {
		case use >= 0.9:
			c.Status, c.Fix = statusFail, "raise net.netfilter.nf_conntrack_max: new connections are dropped when it is full"
		case use >= 0.75:
			c.Status, c.Fix = statusWarn, "raise net.netfilter.nf_conntrack_max before it fills"
		}
	}
	out = append(out, c)
	e := check{Name: "expectation table", Status: statusOK, Detail: fmt.Sprintf("%d expectations", u.Expectations)}
	if max, err := strconv.Atoi(sys.ExpectMax); err == nil && max > 0 {
		e.Detail = fmt.Sprintf("%d of %d expectations (nf_conntrack_expect_max)", u.Expectations, max)
		switch use := float64(u.Expectations) / float64(max); {
		case use >= 0.9:
			e.Status, e.Fix = statusFail, "raise net.netfilter.nf_conntrack_expect_max: the helper records no expectation when it is full"
		case use >= 0.75:
			e.Status, e.Fix = statusWarn, "raise net.netfilter.nf_conntrack_expect_max before it fills"
		}
	}
	out = append(out, e)
	q := check{Name: "control connections", Status: statusOK, Detail: fmt.Sprintf("%d carry the ftp helper", len(u.Controls))}
	if len(u.Quiet) > 0 {
		q.Status = statusWarn
		q.Detail = fmt.Sprintf("%d of %d control connections with the helper have neither an expectation nor a data connection now (first: %s): idle sessions, or PASV/PORT the helper could not use (a server behind NAT advertising its public address, FTPS)",
			len(u.Quiet), len(u.Controls), u.Quiet[0])
		q.Fix = "for NAT or FTPS, open the server's passive range with --passive-ports LO-HI"
	}
	out = append(out, q)
	return out
}

// sysctlChecks: forwarding for a router, strict reverse path filtering,
// syncookies, and accounting.
func sysctlChecks(s helper.Sysctls, cfg nft.Config) []check {
	var out []check
	if cfg.Has(nft.RoleRouter) {
		c := check{Name: "forwarding", Status: statusOK, Detail: "net.ipv4.ip_forward=1"}
		if s.Forward4 != "1" {
			c.Status, c.Detail, c.Fix = statusFail, "net.ipv4.ip_forward="+s.Forward4+": a router that does not forward", "sysctl -w net.ipv4.ip_forward=1"
		} else if s.Forward6 != "1" {
			c.Status, c.Detail, c.Fix = statusWarn, "net.ipv6.conf.all.forwarding="+s.Forward6+": IPv6 is not forwarded", "sysctl -w net.ipv6.conf.all.forwarding=1"
		}
		out = append(out, c)
	}
	rp := check{Name: "rp_filter", Status: statusOK, Detail: "net.ipv4.conf.all.rp_filter=" + s.RPFilter}
	if s.RPFilter == "1" && cfg.Has(nft.RoleRouter) {
		rp.Status = statusWarn
		rp.Detail += ": strict reverse path filtering drops packets of asymmetric routes"
		rp.Fix = "sysctl -w net.ipv4.conf.all.rp_filter=2 (loose)"
	}
	out = append(out, rp)
	sc := check{Name: "syncookies", Status: statusOK, Detail: "net.ipv4.tcp_syncookies=" + s.Syncookies}
	if s.Syncookies == "0" {
		sc.Status, sc.Fix = statusWarn, "sysctl -w net.ipv4.tcp_syncookies=1: a SYN flood fills the listen queue of port 21 otherwise"
	}
	out = append(out, sc)
	ac := check{Name: "accounting", Status: statusOK, Detail: "net.netfilter.nf_conntrack_acct=" + s.Acct}
	if s.Acct != "1" {
		ac.Detail += ": connections carry no packet and byte counts"
	}
	out = append(out, ac)
	return out
}

// legacyCheck: tables of iptables-legacy decide FTP's packets at the same
// hooks, and their rules cannot be read over nftables' netlink.
func legacyCheck(netns string) check {
	c := check{Name: "iptables-legacy", Status: statusOK, Detail: "no iptables-legacy tables in use"}
	tables, err := helper.LegacyTables(netns)
	switch {
	case err != nil:
		c.Status, c.Detail = statusWarn, "could not list iptables-legacy tables: "+err.Error()
	case len(tables) > 0:
		c.Status = statusWarn
		c.Detail = legacyWarning(tables)
		c.Fix = "check that they accept the control ports and RELATED connections (iptables-legacy -S, ip6tables-legacy -S), or move their rules to iptables-nft"
	}
	return c
}

func legacyWarning(tables []string) string {
	return "iptables-legacy tables in use (" + strings.Join(tables, ", ") + "): their chains decide FTP's packets too, and ftpnft cannot read their rules"
}
