package nft

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
)

// foreignChain adds a base chain of another manager to k, with rules.
func foreignChain(t *testing.T, k *fakekernel.Kernel, fam nftables.TableFamily, table, chain, hook string, policy nftables.ChainPolicy, rules ...[]expr.Any) {
	t.Helper()
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: fam, Name: table})
	ch := c.AddChain(&nftables.Chain{Table: tbl, Name: chain, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookRef(hookNumbers[hook]), Priority: nftables.ChainPriorityRef(10), Policy: &policy})
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: r})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func joined(stmts ...stmt) []expr.Any {
	var out []expr.Any
	for _, s := range stmts {
		out = append(out, s.exprs()...)
	}
	return out
}

func findingsText(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// A classic iptables-nft INPUT chain: policy drop, established and SSH
// accepted, nothing for FTP. Coexistence names what it drops, certainly,
// and what ftpnft's own policy would drop that it admits.
func TestCoexistenceIptablesScript(t *testing.T) {
	k := &fakekernel.Kernel{}
	foreignChain(t, k, nftables.TableFamilyIPv4, "filter", "INPUT", "input", nftables.ChainPolicyDrop,
		joined(ctState{stateEstablished}, counter{}, accept),
		joined(iifname{"lo"}, accept),
		joined(dport{"tcp", 22}, counter{}, accept))
	fs, err := Coexistence(context.Background(), DefaultConfig(), WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	got := findingsText(fs)
	for _, want := range []string{
		"ip filter INPUT (hook input priority 10, iptables-nft) drops new control connections to port 21: policy drop; fix: iptables -I INPUT -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT",
		"ip filter INPUT (hook input priority 10, iptables-nft) drops RELATED data connections (expected by the ftp helper): policy drop; fix: iptables -I INPUT -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT",
		"admits new connections to tcp/22, which ftpnft's input chain (policy drop) drops; fix: add --allow tcp/22",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
	if len(fs) != 3 {
		t.Errorf("%d findings, want 3:\n%s", len(fs), got)
	}
	// With --allow tcp/22 and --policy accept, nothing of ftpnft's is to
	// blame; the other chain's drops remain.
	cfg := DefaultConfig()
	cfg.Allow = []Service{{"tcp", 22}}
	fs, _ = Coexistence(context.Background(), cfg, WithKernel(k))
	if len(fs) != 2 {
		t.Errorf("with --allow tcp/22: %s", findingsText(fs))
	}
}

// A firewalld-like chain that accepts established and related (one mask of
// two bits) and FTP's port: nothing to report. Without the port, the drop
// names firewalld and its fix.
func TestCoexistenceFirewalldLike(t *testing.T) {
	k := &fakekernel.Kernel{}
	related := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, stateEstablished|stateRelated), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	foreignChain(t, k, nftables.TableFamilyINet, "firewalld", "filter_INPUT", "input", nftables.ChainPolicyAccept,
		related,
		joined(dport{"tcp", 21}, ctState{stateNew}, accept),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}})
	fs, err := Coexistence(context.Background(), DefaultConfig(), WithKernel(k))
	if err != nil || len(fs) != 0 {
		t.Fatalf("FTP open in firewalld: %v\n%s", err, findingsText(fs))
	}
	cfg := DefaultConfig()
	cfg.Ports = []uint16{2121}
	fs, err = Coexistence(context.Background(), cfg, WithKernel(k))
	if err != nil || len(fs) != 2 || !fs[1].DroppedByFtpnft || fs[0].Manager != "firewalld" || !fs[0].Certain || !strings.Contains(fs[0].Fix, "firewall-cmd --add-port=2121/tcp") {
		t.Fatalf("port 2121 closed in firewalld: %v\n%s", err, findingsText(fs))
	}
	// An address match before the reject: only a suspicion.
	k = &fakekernel.Kernel{}
	foreignChain(t, k, nftables.TableFamilyINet, "other", "in", "input", nftables.ChainPolicyAccept,
		joined(saddrIn{set: "blocked", v6: false}, drop))
	fs, _ = Coexistence(context.Background(), DefaultConfig(), WithKernel(k))
	if len(fs) == 0 || fs[0].Certain {
		t.Fatalf("a set lookup before a drop: %s", findingsText(fs))
	}
}

// Jumps are followed, and a router is read at forward.
func TestCoexistenceJumpsAndRoles(t *testing.T) {
	k := &fakekernel.Kernel{}
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
	drop := nftables.ChainPolicyDrop
	fwd := c.AddChain(&nftables.Chain{Table: tbl, Name: "FORWARD", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	user := c.AddChain(&nftables.Chain{Table: tbl, Name: "DOCKER-USER"})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: fwd, Exprs: joined(jump{"DOCKER-USER"})})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: user, Exprs: joined(ctState{stateRelated}, accept)})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Roles = []Role{RoleRouter}
	fs, err := Coexistence(context.Background(), cfg, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	got := findingsText(fs)
	if len(fs) != 1 || !strings.Contains(got, "FORWARD (hook forward priority 0, docker) drops new control connections to port 21") {
		t.Fatalf("router behind Docker's FORWARD:\n%s", got)
	}
	// A server is not concerned with forward.
	if fs, _ := Coexistence(context.Background(), DefaultConfig(), WithKernel(k)); len(fs) != 0 {
		t.Fatalf("server: %s", findingsText(fs))
	}
}
