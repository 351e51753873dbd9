package conntrack

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Tuple is one direction of a connection: addresses and ports.
type Tuple struct {
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	SPort uint16     `json:"sport"`
	DPort uint16     `json:"dport"`
}

// compare orders tuples by source, source port, destination and
// destination port.
func (t Tuple) compare(u Tuple) int {
	// Not cmp.Or, which would compute every comparison before choosing.
	if c := t.Src.Compare(u.Src); c != 0 {
		return c
	}
	if c := cmp.Compare(t.SPort, u.SPort); c != 0 {
		return c
	}
	if c := t.Dst.Compare(u.Dst); c != 0 {
		return c
	}
	return cmp.Compare(t.DPort, u.DPort)
}

// String formats t as "src:sport -> dst:dport"; a zero port prints as "*".
func (t Tuple) String() string {
	return endpoint(t.Src, t.SPort) + " -> " + endpoint(t.Dst, t.DPort)
}

func endpoint(a netip.Addr, port uint16) string {
	p := "*"
	if port != 0 {
		p = fmt.Sprint(port)
	}
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]:" + p
	}
	return a.String() + ":" + p
}

// Expectation is a connection the kernel expects because a helper read it in
// a control connection, such as the data connection announced by a PASV
// reply. The expected connection arrives in state RELATED.
type Expectation struct {
	// ID is the kernel's identifier of the expectation.
	ID uint32 `json:"id"`
	// Helper is the kernel helper that created it ("ftp").
	Helper string `json:"helper"`
	// Proto is the expected connection's layer 4 protocol ("tcp").
	Proto string `json:"proto"`
	// Timeout is the number of seconds it has left.
	Timeout uint32 `json:"timeout"`
	// Master is the control connection's original tuple.
	Master Tuple `json:"master"`
	// Expected is the expected connection's tuple; Mask says which of its
	// fields must match (a zero source port in the mask: any port).
	Expected Tuple `json:"expected"`
	Mask     Tuple `json:"mask"`
	// Zone is the conntrack zone.
	Zone uint16 `json:"zone"`
	// Class is the helper's expectation class.
	Class uint32 `json:"class"`
	// Flags are the kernel's NF_CT_EXPECT_* flags by name: "permanent",
	// "inactive", "userspace".
	Flags []string `json:"flags"`
	// NAT is set when NAT rewrites the expected connection.
	NAT *NAT `json:"nat,omitempty"`
}

// NAT is the NAT part of an expectation.
type NAT struct {
	// Dir is the direction NAT applies to: "original" or "reply".
	Dir   string `json:"dir"`
	Tuple Tuple  `json:"tuple"`
}

// Related is a data connection the kernel admitted as an expected
// connection of a control connection.
type Related struct {
	// Helper is the master's helper, "" if it could not be told.
	Helper string `json:"helper"`
	Proto  string `json:"proto"`
	// Master is the control connection's original tuple.
	Master Tuple `json:"master"`
	// Flow is the data connection's original tuple.
	Flow Tuple `json:"flow"`
}

// EventType says what happened.
type EventType string

// The event types.
const (
	EventNew     EventType = "new"     // an expectation was created
	EventDestroy EventType = "destroy" // an expectation was used, timed out or replaced
	EventRelated EventType = "related" // an expected data connection was admitted
	EventLost    EventType = "lost"    // the kernel dropped events; the watch resynchronised
)

// Event is one thing a watch saw. Exactly one of Expectation (new, destroy)
// and Related (related) is set, or neither for lost.
type Event struct {
	Type        EventType
	Expectation *Expectation
	Related     *Related
	// Resynced counts, for a lost event, the expectations that appeared or
	// vanished while events were lost; they are reported as new and destroy
	// events right after it.
	Resynced int
}

// MarshalJSON writes the event as one flat object: "event" and the fields of
// the expectation or of the related connection.
func (e Event) MarshalJSON() ([]byte, error) {
	switch {
	case e.Expectation != nil:
		b := appendString(append(make([]byte, 0, 512), `{"event":`...), string(e.Type))
		return e.Expectation.appendFields(append(b, ',')), nil
	case e.Related != nil:
		return json.Marshal(struct {
			Event EventType `json:"event"`
			*Related
		}{e.Type, e.Related})
	default:
		return json.Marshal(struct {
			Event    EventType `json:"event"`
			Resynced int       `json:"resynced"`
		}{e.Type, e.Resynced})
	}
}

// String formats the event as one line for people, like conntrack -E expect
// but naming the control connection.
func (e Event) String() string {
	switch {
	case e.Expectation != nil:
		x := e.Expectation
		return fmt.Sprintf("[%s] %s %s expect %s for control %s timeout %ds",
			strings.ToUpper(string(e.Type)), x.Helper, x.Proto, x.Expected, x.Master, x.Timeout)
	case e.Related != nil:
		r := e.Related
		return fmt.Sprintf("[%s] %s %s data %s admitted for control %s",
			strings.ToUpper(string(e.Type)), orUnknown(r.Helper), r.Proto, r.Flow, r.Master)
	default:
		return fmt.Sprintf("[%s] kernel dropped events (socket buffer full); resynchronised, %d expectation(s) changed meanwhile", strings.ToUpper(string(e.Type)), e.Resynced)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// protoName names a layer 4 protocol number.
func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "ipv6-icmp"
	}
	return fmt.Sprint(p)
}

func tupleOf(t ct.Tuple) Tuple {
	return Tuple{
		Src:   t.IP.SourceAddress,
		Dst:   t.IP.DestinationAddress,
		SPort: t.Proto.SourcePort,
		DPort: t.Proto.DestinationPort,
	}
}

// Kernel expectation flags (NF_CT_EXPECT_*).
var expectFlags = []struct {
	bit  uint32
	name string
}{{1, "permanent"}, {2, "inactive"}, {4, "userspace"}}

// relatedOf converts a new flow that the kernel marked as expected, or
// returns false for any other flow.
func relatedOf(f ct.Flow) (Related, bool) {
	if !f.Status.Expected() || !f.TupleMaster.IP.SourceAddress.IsValid() {
		return Related{}, false
	}
	return Related{
		Proto:  protoName(f.TupleOrig.Proto.Protocol),
		Master: tupleOf(f.TupleMaster),
		Flow:   tupleOf(f.TupleOrig),
	}, true
}
