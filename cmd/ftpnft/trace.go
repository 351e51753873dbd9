package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/nft"
)

// doctor --trace follows the FTP sessions that start while it runs through
// the whole kernel path and tells each one's story: the control connection
// and its helper, what the control channel named for data connections, the
// expectations, and each data connection's verdicts in every table, ending
// with "admitted" or "dropped by ..." and the fix.

// storyLine is one line of a session's story.
type storyLine struct {
	Session string `json:"session"` // "client -> server" of the control connection
	Event   string `json:"event"`   // control, helper, reply (or command), ftps, expectation, data
	Detail  string `json:"detail"`
	Fix     string `json:"fix,omitempty"`
}

// packetIdle is how long a traced packet's events are collected before its
// verdicts are told: the kernel reports every chain of one packet at once.
const packetIdle = 250 * time.Millisecond

// packetSettle is how long after a packet's last step another packet's
// step may still be taken to close it.
const packetSettle = time.Millisecond

// announcement is a data connection that the control channel named.
type announcement struct {
	addr    netip.Addr
	port    uint16
	passive bool
}

// session is one control connection being followed.
type session struct {
	client, server netip.AddrPort
	helper         bool
	ftps, authTLS  bool
	announced      []announcement
	mismatch       bool            // PASV named an address other than the server's
	told           map[string]bool // data connections told (retransmissions are not)
	ports          []uint16        // passive ports the server named, for the fix
	seen           time.Time       // the session's last packet or line
}

func (s *session) key() string { return sessionKey(s.client, s.server) }

func sessionKey(client, server netip.AddrPort) string {
	return client.String() + " -> " + server.String()
}

// tracer assembles stories from trace events, log copies and expectations.
type tracer struct {
	mu       sync.Mutex
	cfg      nft.Config
	install  string // "ftpnft install --netns NAME", for fixes
	findings []nft.Finding
	sessions map[string]*session
	packets  map[uint32]*tracedPacket
	emit     func(storyLine)
}

type tracedPacket struct {
	pkt         nft.Packet
	events      []nft.TraceEvent
	first, last time.Time
	state       string
}

func (t *tracer) controlPort(p uint16) bool { return slices.Contains(t.cfg.Ports, p) }

// event collects a trace event of a packet.
func (t *tracer) event(ev nft.TraceEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.packets[ev.ID]
	// The kernel derives a packet's ID from its buffer, which a later
	// packet may reuse: other headers (source and flags, which no NAT in
	// the path changes) begin another packet.
	if tp != nil && ev.Src.IsValid() && tp.pkt.Src.IsValid() &&
		(ev.Src != tp.pkt.Src || ev.SPort != tp.pkt.SPort || ev.SYN != tp.pkt.SYN || ev.ACK != tp.pkt.ACK) {
		t.tell(tp)
		tp = nil
	}
	if tp == nil {
		// Another packet's steps: those of earlier packets are all in, as
		// the kernel reports a packet's whole path at once; telling them
		// now keeps the story in order.
		t.flushOlder(packetSettle)
		tp = &tracedPacket{first: time.Now()}
		t.packets[ev.ID] = tp
	}
	if ev.Src.IsValid() && !tp.pkt.Src.IsValid() {
		tp.pkt = ev.Packet
	}
	if ev.CtState != "" && tp.state == "" {
		tp.state = ev.CtState
	}
	if p := tp.pkt; p.SYN && !p.ACK && t.controlPort(p.DPort) {
		t.session(netip.AddrPortFrom(p.Src, p.SPort), netip.AddrPortFrom(p.Dst, p.DPort)) // from its first packet on
	}
	if ev.Table != nft.TraceTable {
		tp.events = append(tp.events, ev)
	}
	tp.last = time.Now()
}

// flush tells the verdicts of packets whose events have all arrived (all:
// of every packet, at the end), and forgets sessions idle for longer than
// sessionMemory.
func (t *tracer) flush(all bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, s := range t.sessions {
		if time.Since(s.seen) > sessionMemory {
			delete(t.sessions, k)
		}
	}
	if all {
		t.flushOlder(0)
	} else {
		t.flushOlder(packetIdle)
	}
}

// flushOlder tells the packets whose last step is older than age, in the
// order they were first seen.
func (t *tracer) flushOlder(age time.Duration) {
	var due []*tracedPacket
	for id, tp := range t.packets {
		if time.Since(tp.last) >= age {
			due = append(due, tp)
			delete(t.packets, id)
		}
	}
	slices.SortFunc(due, func(a, b *tracedPacket) int { return a.first.Compare(b.first) })
	for _, tp := range due {
		t.tell(tp)
	}
}

// tell tells what happened to one traced packet: a control connection's
// first packet, or a data connection's.
func (t *tracer) tell(tp *tracedPacket) {
	p := tp.pkt
	if !p.SYN || p.ACK || !p.Src.IsValid() {
		return // only first packets of connections make the story
	}
	verdict, by, table := t.verdict(tp.events)
	if t.controlPort(p.DPort) {
		s := t.session(netip.AddrPortFrom(p.Src, p.SPort), netip.AddrPortFrom(p.Dst, p.DPort))
		t.line(s, "control", "control connection opened ("+orDash(tp.state)+")", "")
		for _, ev := range tp.events {
			if ev.Table == t.cfg.Table && ev.Kind == "rule" && ev.Handle != 0 && (ev.Chain == "prerouting" || ev.Chain == "output") {
				s.helper = true
			}
		}
		if s.helper {
			t.line(s, "helper", "the ftp helper was assigned by inet "+t.cfg.Table, "")
		} else {
			t.line(s, "helper", "no rule assigned the ftp helper", t.install+" (with the flags you installed with)")
		}
		if verdict == "dropped" {
			t.line(s, "control", "control connection dropped by "+by, t.fixFor(table))
		}
		return
	}
	for _, s := range t.sessions {
		for _, a := range s.announced {
			passive := a.passive && p.DPort == a.port && p.Src == s.client.Addr()
			active := !a.passive && p.DPort == a.port && p.Dst == a.addr
			if !passive && !active {
				continue
			}
			conn := fmt.Sprintf("%s:%d -> %s:%d", p.Src, p.SPort, p.Dst, p.DPort)
			if s.told[conn+verdict] {
				return // a retransmission, told already
			}
			s.told[conn+verdict] = true
			detail := fmt.Sprintf("data connection %s (%s): %s", conn, orDash(tp.state), verdict)
			fix := ""
			if verdict == "dropped" {
				detail += " by " + by
				fix = t.dataFix(s, tp.state, table)
			}
			t.line(s, "data", detail, fix)
			return
		}
	}
}

// verdict reads a packet's events: dropped by the first drop, else
// admitted, and the chains it passed.
func (t *tracer) verdict(events []nft.TraceEvent) (verdict, by string, table [3]string) {
	for _, ev := range events {
		if ev.Verdict == "drop" {
			where := "policy"
			if ev.Kind == "rule" {
				where = fmt.Sprintf("rule handle %d", ev.Handle)
			}
			return "dropped", fmt.Sprintf("%s %s %s %s", ev.Family, ev.Table, ev.Chain, where), [3]string{ev.Family, ev.Table, ev.Chain}
		}
	}
	return "admitted", "", table
}

// fixFor finds doctor's fix for a chain of another table.
func (t *tracer) fixFor(table [3]string) string {
	for _, f := range t.findings {
		if f.Family == table[0] && f.Table == table[1] && f.Chain == table[2] {
			return f.Fix
		}
	}
	if table[1] == t.cfg.Table {
		return ""
	}
	return "see ftpnft doctor: " + strings.Join(table[:], " ") + " decides FTP's packets too"
}

// dataFix says how to admit a data connection that was dropped.
func (t *tracer) dataFix(s *session, state string, table [3]string) string {
	if state == "related" || table[1] != t.cfg.Table {
		if fix := t.fixFor(table); fix != "" {
			return fix
		}
	}
	switch {
	case s.ftps, s.mismatch:
		return t.passiveFix(s)
	case !s.helper:
		return t.install + " (the control connection got no helper; connections opened before the install never do)"
	}
	return t.passiveFix(s)
}

func (t *tracer) passiveFix(s *session) string {
	fix := t.install + " --passive-ports LO-HI (and the flags you installed with), with the server's passive range"
	switch {
	case len(s.ports) == 1:
		fix += fmt.Sprintf(", which includes port %d", s.ports[0])
	case len(s.ports) > 1:
		fix += fmt.Sprintf(", which includes ports %d to %d", slices.Min(s.ports), slices.Max(s.ports))
	}
	return fix + " (vsftpd: pasv_min_port and pasv_max_port; proftpd: PassivePorts)"
}

func (t *tracer) session(client, server netip.AddrPort) *session {
	k := sessionKey(client, server)
	s := t.sessions[k]
	if s == nil {
		s = &session{client: client, server: server, told: map[string]bool{}}
		t.sessions[k] = s
	}
	s.seen = time.Now()
	return s
}

// sessionMemory is how long a session is remembered after its last
// packet or line, so that a long trace does not grow.
const sessionMemory = 10 * time.Minute

func (t *tracer) line(s *session, event, detail, fix string) {
	t.emit(storyLine{Session: s.key(), Event: event, Detail: detail, Fix: fix})
}

func orDash(s string) string {
	if s == "" {
		return "state unknown"
	}
	return s
}

// log reads a copy of a control connection's packet: the commands and
// replies that name data connections, and AUTH TLS.
func (t *tracer) log(p nft.Packet) {
	if len(p.Payload) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushOlder(packetSettle) // what came before is told before what the channel said
	fromClient := t.controlPort(p.DPort)
	var s *session
	if fromClient {
		s = t.session(netip.AddrPortFrom(p.Src, p.SPort), netip.AddrPortFrom(p.Dst, p.DPort))
	} else {
		s = t.session(netip.AddrPortFrom(p.Dst, p.DPort), netip.AddrPortFrom(p.Src, p.SPort))
	}
	if s.ftps {
		return // encrypted from here on
	}
	for _, line := range strings.Split(strings.TrimRight(string(p.Payload), "\r\n"), "\r\n") {
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		switch {
		case fromClient && (strings.HasPrefix(strings.ToUpper(line), "AUTH TLS") || strings.HasPrefix(strings.ToUpper(line), "AUTH SSL")):
			s.authTLS = true
		case !fromClient && s.authTLS && strings.HasPrefix(line, "234"):
			s.ftps = true
			t.line(s, "ftps", "the client started TLS (AUTH TLS, 234): FTPS; the helper cannot read the encrypted control channel, so it expects no data connection", t.passiveFix(s))
			return
		case !fromClient && (verb == "227" || verb == "229"):
			if ap, err := helper.ParsePassive(line, s.server.Addr()); err == nil {
				t.announce(s, announcement{addr: ap.Addr(), port: ap.Port(), passive: true}, line)
			}
		case fromClient && (verb == "PORT" || verb == "EPRT"):
			if ap, err := helper.ParseActive(verb, arg); err == nil {
				t.announce(s, announcement{addr: ap.Addr(), port: ap.Port()}, line)
			}
		}
	}
}

func (t *tracer) announce(s *session, a announcement, said string) {
	s.announced = append(s.announced, a)
	event, who, what := "reply", "server", "passive"
	if !a.passive {
		event, who, what = "command", "client", "active"
	}
	t.line(s, event, fmt.Sprintf("%s said %q: %s data connection to %s:%d", who, said, what, a.addr, a.port), "")
	if a.passive {
		s.ports = append(s.ports, a.port)
		if a.addr != s.server.Addr().Unmap() && a.addr != s.server.Addr() {
			s.mismatch = true
			t.line(s, "reply", fmt.Sprintf("the server advertises %s, not %s, its address on the control connection (a server behind NAT with pasv_address?): the ftp helper (loose=0) records no expectation for it", a.addr, s.server.Addr()), t.passiveFix(s))
		}
	}
}

// expectation notes an expectation the helper created.
func (t *tracer) expectation(ev conntrack.Event) {
	if ev.Type != conntrack.EventNew || ev.Expectation == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	x := ev.Expectation
	for _, s := range t.sessions {
		if s.client.Addr() == x.Master.Src && s.client.Port() == x.Master.SPort && s.server.Port() == x.Master.DPort {
			t.line(s, "expectation", "the helper expects "+x.Expected.String(), "")
		}
	}
}

// runTrace traces until ctx ends (or --for has passed), printing each line
// of the stories as it happens. Everything the trace adds to the ruleset is
// removed before it returns.
func runTrace(ctx context.Context, o *cliOptions, stdout, stderr io.Writer) int {
	// SIGPIPE too (`doctor --trace | head`): caught, a closed pipe is a
	// write error, and the trace ends by removing its table.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	if o.traceFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.traceFor)
		defer cancel()
	}
	ctx, cancelOnWriteError := context.WithCancel(ctx)
	defer cancelOnWriteError()
	// What FTP is expected to do here: the flags, or what is installed.
	_, cfg, err := readTable(ctx, o)
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	out := newLineWriter(stdout, func(n int) []byte {
		return fmt.Appendf(nil, "ftpnft doctor: %d story lines not written: the output was not read fast enough\n", n)
	}, cancelOnWriteError)
	t := &tracer{cfg: cfg, install: "ftpnft install" + o.netnsFlag(), sessions: map[string]*session{}, packets: map[uint32]*tracedPacket{},
		emit: func(l storyLine) {
			if o.json {
				b, _ := json.Marshal(l)
				out.line(append(b, '\n'))
				return
			}
			b := fmt.Appendf(nil, "[%s] %s\n", l.Session, l.Detail)
			if l.Fix != "" {
				b = fmt.Appendf(b, "[%s]   fix: %s\n", l.Session, l.Fix)
			}
			out.line(b)
		}}
	t.findings = coexistence(ctx, cfg, o.nftOptions())

	// Expectations are watched from before the first packet is traced.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched := make(chan error, 1)
	watching := make(chan struct{})
	go func() {
		watched <- conntrack.Watch(watchCtx, t.expectation, append(o.conntrackOptions(),
			conntrack.WithHelper(""), conntrack.WithReady(func() { close(watching) }))...)
	}()
	select {
	case <-watching:
	case err := <-watched:
		if err != nil {
			return fail(stderr, o.cmd, err)
		}
		return exitOK // interrupted before it began
	}
	ticker := time.NewTicker(packetIdle / 2)
	defer ticker.Stop()
	go func() {
		for {
			select {
			case <-ticker.C:
				t.flush(false)
			case <-ctx.Done():
				return
			}
		}
	}()
	where := "this network namespace"
	if o.netnsArg != "" {
		where = "network namespace " + o.netnsArg
	}
	err = nft.Trace(ctx, cfg.Ports, nft.TraceHandler{Event: t.event, Log: t.log}, func() {
		fmt.Fprintf(stderr, "ftpnft doctor: tracing FTP sessions on ports %s in %s (Ctrl-C to stop)\n", join(cfg.Ports), where)
	}, o.nftOptions()...)
	t.flush(true)
	stopWatch()
	if werr := <-watched; werr != nil && err == nil {
		err = fmt.Errorf("watch expectations: %w", werr) // the namespace went, say
	}
	if werr := out.close(); werr != nil && err == nil {
		err = fmt.Errorf("write output: %w", werr)
	}
	if err != nil {
		return fail(stderr, o.cmd, err)
	}
	return exitOK
}
