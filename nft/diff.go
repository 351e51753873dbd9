package nft

import (
	"fmt"
	"slices"

	"github.com/ftpnft/ftpnft/internal/input"
)

// maxDifferences bounds how many differences status lists: a table that
// was flushed by hand differs in every rule, and a few say enough.
const maxDifferences = 20

// differences lists, in nft's words, how the table cur differs from want:
// what was changed by hand, or what an install of want would change.
// Objects, sets and chains are matched by name, rules by their content.
func differences(cur *installed, want *Ruleset) []string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }

	pairByName(cur.Helpers, want.Helpers, func(h Helper) string { return h.Name },
		func(h, got Helper, ok bool) {
			switch {
			case !ok:
				add("ct helper %s missing", h.Name)
			case got != h:
				add("ct helper %s: type %q protocol %s, want type %q protocol %s", h.Name, got.Type, got.Protocol, h.Type, h.Protocol)
			}
		},
		func(h Helper) { add("ct helper %s is not in the configuration", h.Name) })

	pairByName(cur.Sets, want.Sets, func(s Set) string { return s.Name },
		func(s, got Set, ok bool) {
			switch {
			case !ok:
				add("set %s missing", s.Name)
			case got.definition() != s.definition():
				add("set %s: type %s flags %q, want type %s flags %q", s.Name, got.keyType(), got.flags(), s.keyType(), s.flags())
			case !slices.Equal(got.Ranges, s.Ranges):
				missing, extra := rangeDifference(s.Ranges, got.Ranges), rangeDifference(got.Ranges, s.Ranges)
				add("set %s: %d ranges missing, %d not in the configuration", s.Name, missing, extra)
			}
		},
		func(s Set) { add("set %s is not in the configuration", s.Name) })

	pairByName(cur.Chains, want.installedChains(), func(ic installedChain) string { return ic.Name },
		func(ch, got installedChain, ok bool) {
			switch {
			case !ok:
				add("chain %s missing", ch.Name)
				return
			case got.Type != ch.Type || got.Hook != ch.Hook || got.Priority != ch.Priority:
				add("chain %s: type %q hook %q priority %d, want type %q hook %q priority %d",
					ch.Name, got.Type, got.Hook, got.Priority, ch.Type, ch.Hook, ch.Priority)
			case got.Policy != ch.Policy:
				add("chain %s: policy %s, want %s", ch.Name, got.Policy, ch.Policy)
			}
			d = append(d, ruleDifferences(ch.Name, installedRules(got), desiredRules(ch))...)
		},
		func(ch installedChain) { add("chain %s is not in the configuration", ch.Name) })

	if len(d) > maxDifferences {
		d = append(d[:maxDifferences-1], fmt.Sprintf("… and %d more", len(d)-maxDifferences+1))
	}
	return d
}

// pairByName calls pair with each wanted item and the installed item of
// the same name (ok false when there is none), in the wanted order, then
// extra with each installed item that no wanted one names.
func pairByName[T any](installed, wanted []T, name func(T) string, pair func(want, got T, ok bool), extra func(got T)) {
	byName := make(map[string]T, len(installed))
	for _, x := range installed {
		byName[name(x)] = x
	}
	for _, w := range wanted {
		got, ok := byName[name(w)]
		delete(byName, name(w))
		pair(w, got, ok)
	}
	for _, x := range installed {
		if _, left := byName[name(x)]; left {
			extra(x)
		}
	}
}

// ruleDifferences compares the rules of one chain: those missing, those
// that differ from the configuration's rule of the same comment, those
// that are not in the configuration (added by hand: named by their
// handle), and rules that are all there but in another order.
func ruleDifferences(chain string, got, want []ruleFP) []string {
	wanted := map[string]int{}
	for _, r := range want {
		wanted[r.key()]++
	}
	var extra []ruleFP
	for _, r := range got {
		if k := r.key(); wanted[k] > 0 {
			wanted[k]--
		} else {
			extra = append(extra, r)
		}
	}
	var d []string
	for _, r := range want {
		k := r.key()
		if wanted[k] == 0 {
			continue
		}
		wanted[k]--
		comment, _ := r.comment()
		i := slices.IndexFunc(extra, func(x ruleFP) bool { c, ours := x.comment(); return ours && c == comment })
		if i >= 0 {
			d = append(d, fmt.Sprintf("chain %s: rule %s differs", chain, input.Quote(comment)))
			extra = slices.Delete(extra, i, i+1)
			continue
		}
		d = append(d, fmt.Sprintf("chain %s: rule %s missing", chain, input.Quote(comment)))
	}
	for _, r := range extra {
		switch comment, ours := r.comment(); {
		case ours:
			d = append(d, fmt.Sprintf("chain %s: rule %s (handle %d) is not in the configuration", chain, input.Quote(comment), r.handle))
		case comment != "":
			d = append(d, fmt.Sprintf("chain %s: rule handle %d with comment %s is not ftpnft's", chain, r.handle, input.Quote(comment)))
		default:
			d = append(d, fmt.Sprintf("chain %s: rule handle %d is not ftpnft's", chain, r.handle))
		}
	}
	if len(d) == 0 && len(got) == len(want) {
		for i := range got {
			if got[i].key() != want[i].key() {
				return []string{fmt.Sprintf("chain %s: rules in another order", chain)}
			}
		}
	}
	return d
}

// rangeDifference counts the ranges of a that b lacks.
func rangeDifference(a, b []AddrRange) int {
	in := make(map[AddrRange]bool, len(b))
	for _, r := range b {
		in[r] = true
	}
	n := 0
	for _, r := range a {
		if !in[r] {
			n++
		}
	}
	return n
}
