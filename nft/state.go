package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The state directory ([WithStateDir]) keeps, for each table, the address
// sets of the ruleset last applied to it: to change a set of a million
// networks by difference, Apply must know what the kernel holds, and the
// kernel takes a minute to list such a set. What is read from the
// directory is used only when the table's stamp proves it (read): the
// stamp's generation is the ruleset's current one, and the table with these
// sets has the stamp's fingerprint. A missing, old or damaged file costs a
// dump, never a wrong plan.

// stateMagic starts a state file; the version is its last digit.
const stateMagic = "ftpnft sets 1\n"

// statePath is the file that holds the sets of table in c's namespace, or
// "" when there is no state directory.
func (c *conn) statePath(table string) (string, error) {
	if c.stateDir == "" {
		return "", nil
	}
	if table == "" || filepath.Base(table) != table || table[0] == '.' {
		return "", fmt.Errorf("table name %q cannot name a state file", table)
	}
	// A namespace is named by its inode, unique while it lives. A new
	// namespace that reuses one finds a file its stamp does not prove.
	var st unix.Stat_t
	var err error
	switch {
	case c.dial != nil:
		return filepath.Join(c.stateDir, "kernel-"+table+".sets"), nil
	case c.netnsFd >= 0:
		err = unix.Fstat(c.netnsFd, &st)
	default:
		err = unix.Stat("/proc/self/ns/net", &st)
	}
	if err != nil {
		return "", fmt.Errorf("identify the network namespace: %w", err)
	}
	return filepath.Join(c.stateDir, fmt.Sprintf("netns-%d-%s.sets", st.Ino, table)), nil
}

// A candidate returns a ruleset whose address sets the kernel's table may
// hold, or nil; it is called only when needed.
type candidate func() *Ruleset

// candidates are the rulesets whose address sets the kernel's table may
// hold: rs (the one wanted; nil for none), then the sets recorded in the
// state directory, which are read only when rs's sets are not the
// kernel's. With WithVerify there are none: every set is read.
func (c *conn) candidates(table string, rs *Ruleset) []candidate {
	if c.verify {
		return nil
	}
	return []candidate{
		func() *Ruleset { return rs },
		func() *Ruleset { return c.recall(table) },
	}
}

// recall returns the address sets recorded for table, as a ruleset of
// only those sets, or nil when none are recorded or the file cannot be
// read.
func (c *conn) recall(table string) *Ruleset {
	path, err := c.statePath(table)
	if err != nil || path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	sets, _, err := decodeState(data)
	if err != nil {
		return nil
	}
	return &Ruleset{Table: table, Sets: sets}
}

// remember records the address sets of rs, with fingerprint fp, for its
// table, unless the file holds them already. Without a state directory it
// does nothing.
func (c *conn) remember(rs *Ruleset, fp fingerprint) error {
	path, err := c.statePath(rs.Table)
	if err != nil || path == "" {
		return err
	}
	if f, err := os.Open(path); err == nil {
		head := make([]byte, len(stateMagic)+len(fp))
		_, err := io.ReadFull(f, head)
		f.Close()
		if err == nil && bytes.Equal(head, append([]byte(stateMagic), fp[:]...)) {
			return nil
		}
	}
	var sets []Set
	for _, s := range rs.Sets {
		if s.holdsRanges() {
			sets = append(sets, s)
		}
	}
	if len(sets) == 0 {
		return c.forget(rs.Table)
	}
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.stateDir, ".sets-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(encodeState(sets, fp))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("record the address sets in %s: %w", c.stateDir, err)
	}
	return nil
}

// forget removes what is recorded for table.
func (c *conn) forget(table string) error {
	path, err := c.statePath(table)
	if err != nil || path == "" {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// encodeState writes sets as a state file: the magic, the fingerprint of
// the ruleset they belong to, then each set's name, family, and ranges as
// address bytes.
func encodeState(sets []Set, fp fingerprint) []byte {
	size := len(stateMagic) + len(fp) + 4
	for _, s := range sets {
		size += 2 + len(s.Name) + 1 + 4 + len(s.Ranges)*32
	}
	b := make([]byte, 0, size)
	b = append(append(b, stateMagic...), fp[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(sets)))
	for _, s := range sets {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s.Name)))
		b = append(b, s.Name...)
		b = append(b, byte(boolInt(s.V6)))
		b = binary.BigEndian.AppendUint32(b, uint32(len(s.Ranges)))
		for _, r := range s.Ranges {
			b = appendAddr(appendAddr(b, r.From, s.V6), r.To, s.V6)
		}
	}
	return b
}

// appendAddr appends a's 4 bytes, or 16 when v6, without allocating them.
func appendAddr(b []byte, a netip.Addr, v6 bool) []byte {
	if !v6 && a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

// errState is a state file that is not one.
var errState = errors.New("not a state file of this ftpnft")

// decodeState reads what encodeState wrote.
func decodeState(b []byte) ([]Set, fingerprint, error) {
	var fp fingerprint
	if !bytes.HasPrefix(b, []byte(stateMagic)) || len(b) < len(stateMagic)+len(fp)+4 {
		return nil, fp, errState
	}
	b = b[len(stateMagic):]
	copy(fp[:], b)
	b = b[len(fp):]
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	var sets []Set
	for ; n > 0; n-- {
		if len(b) < 2 {
			return nil, fp, errState
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l+1+4 {
			return nil, fp, errState
		}
		s := Set{Name: string(b[2 : 2+l]), V6: b[2+l] == 1, Interval: true}
		count := int(binary.BigEndian.Uint32(b[2+l+1:]))
		b = b[2+l+1+4:]
		width := 4
		if s.V6 {
			width = 16
		}
		if count > len(b)/(2*width) {
			return nil, fp, errState
		}
		s.Ranges = make([]AddrRange, count)
		for i := range s.Ranges {
			from, _ := netip.AddrFromSlice(b[:width])
			to, _ := netip.AddrFromSlice(b[width : 2*width])
			s.Ranges[i] = AddrRange{from, to}
			b = b[2*width:]
		}
		sets = append(sets, s)
	}
	if len(b) != 0 {
		return nil, fp, errState
	}
	return sets, fp, nil
}
