package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// fingerprint describes rs as the kernel would report it, so that a table
// read back can be compared with it.
func (rs *Ruleset) fingerprint() fingerprint {
	return fingerprintOf(rs.Helpers, rs.Sets, rs.installedChains(), desiredRules)
}

// installedChains is rs's chains in the form of chains read back, without
// rules read: they are built from each chain's rule list.
func (rs *Ruleset) installedChains() []installedChain {
	chains := make([]installedChain, len(rs.Chains))
	for i, c := range rs.Chains {
		chains[i] = installedChain{Chain: c}
	}
	return chains
}

// A fingerprint is the SHA-256 of the lines that describe a table
// canonically, joined by newlines (fingerprintOf). Hashing the lines one by
// one spares joining them: a 10,000-range set's line is 320 KB.
type fingerprint [sha256.Size]byte

// fingerprintOf encodes helpers, chains and rules canonically: rules as their
// netlink encoding with counter values cleared, chains sorted by name.
func fingerprintOf(helpers []Helper, sets []Set, chains []installedChain, rules func(installedChain) []ruleFP) fingerprint {
	var lines [][]byte
	for _, h := range helpers {
		lines = append(lines, fmt.Appendf(nil, "helper %s %s %s", h.Name, h.Type, h.Protocol))
	}
	for _, s := range sets {
		lines = append(lines, s.fingerprint())
	}
	slices.SortFunc(lines, bytes.Compare)
	sorted := slices.Clone(chains)
	slices.SortFunc(sorted, func(a, b installedChain) int { return strings.Compare(a.Name, b.Name) })
	for _, ch := range sorted {
		lines = append(lines, fmt.Appendf(nil, "chain %s %s %s %d %s", ch.Name, ch.Type, ch.Hook, ch.Priority, ch.Policy))
		for _, r := range rules(ch) {
			lines = append(lines, []byte("rule "+r.key()))
		}
	}
	h := sha256.New()
	for i, l := range lines {
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		h.Write(l)
	}
	return fingerprint(h.Sum(nil))
}

type ruleFP struct {
	exprs  []expr.Any
	udata  []byte
	handle uint64 // of a rule read back from the kernel
}

// comment returns the rule's comment and whether it is one of ftpnft's,
// without ftpnft's prefix.
func (r ruleFP) comment() (string, bool) {
	c := commentOf(r.udata)
	return strings.TrimPrefix(c, commentPrefix), strings.HasPrefix(c, commentPrefix)
}

// commentOf returns the comment in a rule's user data, or "".
func commentOf(udata []byte) string {
	c, _ := userdata.GetString(udata, userdata.TypeComment)
	return strings.TrimRight(c, "\x00")
}

// key encodes the rule canonically: its netlink expressions with counter
// values cleared, and its user data. Two rules are the same rule when
// their keys are equal.
func (r ruleFP) key() string {
	var b bytes.Buffer
	for _, e := range r.exprs {
		m, err := expr.Marshal(byte(nftables.TableFamilyINet), canonical(e))
		if err != nil {
			m = fmt.Appendf(nil, "unencodable %T", e)
		}
		b.Write(m)
	}
	return hex.EncodeToString(b.Bytes()) + " " + hex.EncodeToString(r.udata)
}

// installedRules are the rules of a chain read back from the kernel.
func installedRules(ic installedChain) []ruleFP {
	fps := make([]ruleFP, len(ic.rules))
	for i, r := range ic.rules {
		fps[i] = ruleFP{exprs: r.Exprs, udata: r.UserData, handle: r.Handle}
	}
	return fps
}

// desiredRules are the rules of a chain of a Ruleset.
func desiredRules(ic installedChain) []ruleFP {
	fps := make([]ruleFP, len(ic.Chain.Rules))
	for i, r := range ic.Chain.Rules {
		fps[i] = ruleFP{exprs: r.exprs(), udata: r.userData()}
	}
	return fps
}

// canonical returns e as ftpnft would send it: counters without their
// values, and NAT ranges without the maximum registers that the kernel
// reports as equal to the minimum ones when none were sent.
func canonical(e expr.Any) expr.Any {
	switch e := e.(type) {
	case *expr.Counter:
		return &expr.Counter{}
	case *expr.Lookup:
		l := *e
		l.SetID = 0 // the kernel reports the set by name only
		return &l
	case *expr.Dynset:
		d := *e
		d.SetID = 0
		return &d
	case *expr.NAT:
		n := *e
		if n.RegAddrMax == n.RegAddrMin {
			n.RegAddrMax = 0
		}
		if n.RegProtoMax == n.RegProtoMin {
			n.RegProtoMax = 0
		}
		return &n
	}
	return e
}

// The stamp: ftpnft's table carries a digest of the ruleset ftpnft last
// applied to it and the generation that batch led to. Every change to the
// ruleset, by anyone, is a commit that moves the generation on; so when
// the generation still equals the stamp's, the table is exactly as ftpnft
// left it, and a re-install of the same ruleset needs to read nothing more
// (a million-network set takes the kernel a minute to dump). Otherwise
// Apply compares the table expression by expression, as always.
//
// The stamp is a libnftnl user data TLV of a type nft does not know (it
// only knows the comment, type 0), so nft ignores it when it lists the
// table. The kernel fixes a table's user data when it creates the table,
// so the stamp of a table changed in place lives in a rule of a chain of
// its own, the stamp chain, which each change replaces by handle. The
// table's user data keeps the stamp it was created with: it marks the
// table as ftpnft's.
const stampType = 0xf7

// stampChain is the regular chain that holds the stamp rule. No rule
// jumps to it: its one rule, without statements, only carries user data.
const stampChain = "stamp"

// stampComment is the stamp rule's comment, for people listing the table.
const stampComment = "stamp: digest of the ruleset last applied, for ftpnft status"

// stampRuleData is the user data of the stamp rule: its comment and the
// stamp.
func stampRuleData(st []byte) []byte {
	return append(userdata.AppendString(nil, userdata.TypeComment, commentPrefix+stampComment), st...)
}

// nftaTableUserdata is NFTA_TABLE_USERDATA (linux/netfilter/nf_tables.h),
// which golang.org/x/sys/unix lacks.
const nftaTableUserdata = 6

// stamp returns the table user data for fingerprint fp at generation gen.
func stamp(fp fingerprint, gen uint32) []byte {
	b := []byte{stampType, byte(4 + len(fp))}
	b = binary.BigEndian.AppendUint32(b, gen)
	return append(b, fp[:]...)
}

// parseStamp returns the generation and fingerprint of the stamp in a
// table's user data; ok is false when there is none.
func parseStamp(udata []byte) (gen uint32, fp fingerprint, ok bool) {
	for len(udata) >= 2 {
		typ, n := udata[0], int(udata[1])
		if 2+n > len(udata) {
			break
		}
		if v := udata[2 : 2+n]; typ == stampType && n == 4+len(fp) {
			copy(fp[:], v[4:])
			return binary.BigEndian.Uint32(v), fp, true
		}
		udata = udata[2+n:]
	}
	return 0, fingerprint{}, false
}

// nextGeneration is the generation after a commit at gen: the kernel skips
// 0, which means "no generation" in a batch.
func nextGeneration(gen uint32) uint32 {
	if gen+1 == 0 {
		return 1
	}
	return gen + 1
}
