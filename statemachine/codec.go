package statemachine

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The command codec is the format of the bytes kvd puts in the Raft log. Those
// bytes outlive every binary that wrote them, so:
//
//   - every encoded entry starts with CodecVersion;
//   - OpType values are persisted and must never be renumbered or reused;
//   - decoding is strict (no trailing bytes, canonical varints only), so one
//     byte string has exactly one meaning and re-encoding a decoded entry gives
//     back the same bytes.
//
// Layout of one entry (version 1), all integers unsigned LEB128 varints:
//
//	entry   = version(1 byte = 0x01) ncmds command*ncmds
//	command = ncmps compare*ncmps nops op*nops
//	compare = keylen key modrev
//	op      = type(1 byte) keylen key [vallen value]   ; value only for puts
//
// Results (the Data of sm.Result) use the same conventions:
//
//	results = version(1 byte = 0x01) n result*n
//	result  = revision flags(1 byte: bit 0 = succeeded) deleted ncur cur*ncur

// CodecVersion is the first byte of every encoded command batch and result
// batch. A decoder rejects any other value.
const CodecVersion = 1

// OpType is the kind of a write operation. Values are persisted in the Raft
// log: don't renumber them, never reuse a retired value.
type OpType uint8

// Op types. Meta ops address the reserved metadata keyspace (member metadata),
// which user ops and compares can never reach.
const (
	OpPut        OpType = 1 // put into the user keyspace
	OpDelete     OpType = 2 // delete from the user keyspace
	OpMetaPut    OpType = 3 // put into the metadata keyspace
	OpMetaDelete OpType = 4 // delete from the metadata keyspace
)

// String implements fmt.Stringer.
func (t OpType) String() string {
	switch t {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpMetaPut:
		return "meta-put"
	case OpMetaDelete:
		return "meta-delete"
	default:
		return fmt.Sprintf("OpType(%d)", uint8(t))
	}
}

func (t OpType) valid() bool { return t >= OpPut && t <= OpMetaDelete }

func (t OpType) isPut() bool { return t == OpPut || t == OpMetaPut }

// Op is one write. Value is used only by puts (and may be empty); Key must be
// non-empty.
type Op struct {
	Type  OpType
	Key   []byte
	Value []byte
}

// Compare is a precondition on a key of the user keyspace: its current mod
// revision must equal ModRevision, where 0 means "the key must not exist".
type Compare struct {
	Key         []byte
	ModRevision uint64
}

// Command is applied atomically: if every Compare holds, Ops are applied in
// order; otherwise nothing is written. A plain put is one Op and no Compares;
// a compare-and-swap transaction is Compares plus Ops.
type Command struct {
	Compares []Compare
	Ops      []Op
}

// Result is the outcome of one Command.
type Result struct {
	// Revision is the Raft index of the entry that applied the command.
	Revision uint64
	// Succeeded is false when a compare failed; then nothing was written.
	Succeeded bool
	// Deleted counts the keys that delete ops actually removed.
	Deleted uint64
	// Current holds, when !Succeeded, the actual mod revision of each
	// compared key in Compares order (0 = absent).
	Current []uint64
}

// EncodeCommands appends the encoding of cmds, as one Raft entry, to dst.
// It does not validate its input: DecodeCommands rejects empty keys and
// unknown op types, so a caller must not propose such commands.
func EncodeCommands(dst []byte, cmds []Command) []byte {
	dst = grow(dst, commandsSize(cmds))
	dst = append(dst, CodecVersion)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for i := range cmds {
		c := &cmds[i]
		dst = binary.AppendUvarint(dst, uint64(len(c.Compares)))
		for j := range c.Compares {
			dst = appendBytes(dst, c.Compares[j].Key)
			dst = binary.AppendUvarint(dst, c.Compares[j].ModRevision)
		}
		dst = binary.AppendUvarint(dst, uint64(len(c.Ops)))
		for j := range c.Ops {
			op := &c.Ops[j]
			dst = append(dst, byte(op.Type))
			dst = appendBytes(dst, op.Key)
			if op.Type.isPut() {
				dst = appendBytes(dst, op.Value)
			}
		}
	}
	return dst
}

// commandsSize is the exact encoded size of cmds.
func commandsSize(cmds []Command) int {
	n := 1 + uvarintLen(uint64(len(cmds)))
	for i := range cmds {
		c := &cmds[i]
		n += uvarintLen(uint64(len(c.Compares))) + uvarintLen(uint64(len(c.Ops)))
		for j := range c.Compares {
			n += bytesLen(c.Compares[j].Key) + uvarintLen(c.Compares[j].ModRevision)
		}
		for j := range c.Ops {
			n += 1 + bytesLen(c.Ops[j].Key)
			if c.Ops[j].Type.isPut() {
				n += bytesLen(c.Ops[j].Value)
			}
		}
	}
	return n
}

// DecodeCommands decodes one Raft entry produced by EncodeCommands. Keys and
// values of the result alias b. Any malformed input (wrong version,
// truncation, trailing bytes, non-canonical varint, unknown op type, empty
// key) returns an error wrapping ErrCorruptCommand.
//
// Decoding costs three allocations whatever the batch size: a first pass
// validates and counts, a second fills slices carved from shared arrays.
func DecodeCommands(b []byte) ([]Command, error) {
	ncmds, ncmps, nops, err := scanCommands(b)
	if err != nil {
		return nil, err
	}
	cmds := make([]Command, ncmds)
	var cmps []Compare
	if ncmps > 0 {
		cmps = make([]Compare, ncmps)
	}
	var ops []Op
	if nops > 0 {
		ops = make([]Op, nops)
	}
	d := decoder{b: b, off: 1}
	d.uvarint() // ncmds
	for i := range cmds {
		n := int(d.uvarint())
		if n > 0 {
			cmds[i].Compares, cmps = cmps[:n:n], cmps[n:]
			for j := range cmds[i].Compares {
				cmds[i].Compares[j] = Compare{Key: d.bytes(), ModRevision: d.uvarint()}
			}
		}
		n = int(d.uvarint())
		if n > 0 {
			cmds[i].Ops, ops = ops[:n:n], ops[n:]
			for j := range cmds[i].Ops {
				op := &cmds[i].Ops[j]
				op.Type = OpType(d.byte())
				op.Key = d.bytes()
				if op.Type.isPut() {
					op.Value = d.bytes()
				}
			}
		}
	}
	return cmds, nil
}

// scanCommands validates b completely and counts what DecodeCommands must
// allocate. Counts are bounded by len(b) before use, so hostile input cannot
// cause large allocations.
func scanCommands(b []byte) (ncmds, ncmps, nops int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, corruptf("empty command batch")
	}
	if b[0] != CodecVersion {
		return 0, 0, 0, corruptf("codec version %d, want %d", b[0], CodecVersion)
	}
	d := decoder{b: b, off: 1}
	n := d.count(2) // each command takes at least 2 bytes
	for i := 0; i < n && d.err == nil; i++ {
		nc := d.count(3) // keylen, key, modrev
		for j := 0; j < nc && d.err == nil; j++ {
			d.key()
			d.uvarint()
		}
		ncmps += nc
		no := d.count(3) // type, keylen, key
		for j := 0; j < no && d.err == nil; j++ {
			t := OpType(d.byte())
			if d.err == nil && !t.valid() {
				d.fail("unknown op type %d", uint8(t))
			}
			d.key()
			if t.isPut() {
				d.bytes()
			}
		}
		nops += no
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes", len(b)-d.off)
	}
	if d.err != nil {
		return 0, 0, 0, d.err
	}
	return n, ncmps, nops, nil
}

// EncodeResults appends the encoding of rs to dst.
func EncodeResults(dst []byte, rs []Result) []byte {
	n := 1 + uvarintLen(uint64(len(rs)))
	for i := range rs {
		n += uvarintLen(rs[i].Revision) + 1 + uvarintLen(rs[i].Deleted) + uvarintLen(uint64(len(rs[i].Current)))
		for _, c := range rs[i].Current {
			n += uvarintLen(c)
		}
	}
	dst = grow(dst, n)
	dst = append(dst, CodecVersion)
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for i := range rs {
		r := &rs[i]
		dst = binary.AppendUvarint(dst, r.Revision)
		var flags byte
		if r.Succeeded {
			flags |= resultSucceeded
		}
		dst = append(dst, flags)
		dst = binary.AppendUvarint(dst, r.Deleted)
		dst = binary.AppendUvarint(dst, uint64(len(r.Current)))
		for _, c := range r.Current {
			dst = binary.AppendUvarint(dst, c)
		}
	}
	return dst
}

const resultSucceeded byte = 1 << 0

// DecodeResults decodes what EncodeResults produced, as strictly as
// DecodeCommands; errors wrap ErrCorruptCommand.
func DecodeResults(b []byte) ([]Result, error) {
	if len(b) == 0 {
		return nil, corruptf("empty result batch")
	}
	if b[0] != CodecVersion {
		return nil, corruptf("codec version %d, want %d", b[0], CodecVersion)
	}
	d := decoder{b: b, off: 1}
	n := d.count(4) // revision, flags, deleted, ncur
	if d.err != nil {
		return nil, d.err
	}
	rs := make([]Result, n)
	for i := 0; i < n && d.err == nil; i++ {
		r := &rs[i]
		r.Revision = d.uvarint()
		flags := d.byte()
		if d.err == nil && flags&^resultSucceeded != 0 {
			d.fail("unknown result flags %#x", flags)
		}
		r.Succeeded = flags&resultSucceeded != 0
		r.Deleted = d.uvarint()
		if nc := d.count(1); nc > 0 {
			r.Current = make([]uint64, nc)
			for j := range r.Current {
				r.Current[j] = d.uvarint()
			}
		}
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes", len(b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return rs, nil
}

// decoder reads canonical varints and length-prefixed byte strings. The first
// error sticks; later reads return zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = corruptf("offset %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail("truncated varint")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case n > 1 && d.b[d.off+n-1] == 0:
		d.fail("non-canonical varint")
		return 0
	}
	d.off += n
	return v
}

// count reads an element count and rejects it when the remaining input could
// not hold that many elements of at least minSize bytes each.
func (d *decoder) count(minSize int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64((len(d.b)-d.off)/minSize) {
		d.fail("count %d exceeds remaining %d bytes", v, len(d.b)-d.off)
		return 0
	}
	return int(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("length %d exceeds remaining %d bytes", n, len(d.b)-d.off)
		return nil
	}
	s := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) key() []byte {
	k := d.bytes()
	if d.err == nil && len(k) == 0 {
		d.fail("empty key")
	}
	return k
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptCommand, fmt.Sprintf(format, args...))
}

func appendBytes(dst, s []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func bytesLen(s []byte) int { return uvarintLen(uint64(len(s))) + len(s) }

// grow makes room for n more bytes in dst with at most one allocation.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), len(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	return dst
}
