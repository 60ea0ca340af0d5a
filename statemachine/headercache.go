package statemachine

// headerCache holds the revision headers of recently read or written keys
// of one store generation, so that a put of a hot key does not read its
// header from Pebble. It is exact, not a hint: Update is the store's only
// writer, the applier adds the headers of a batch only after the batch
// committed, and a new generation (RecoverFromSnapshot) empties it. See
// DESIGN.md, "The header cache".
//
// It is bounded by an estimate of its memory; when full, it evicts entries
// at random (Go's map iteration starts at a random place), which costs no
// bookkeeping per hit.
type headerCache struct {
	m     map[string]keyMeta // internal key → header; exists=false: absent
	gen   uint64             // generation of the store the headers belong to
	bytes int                // estimated memory of m
	max   int                // bound of bytes; 0 disables the cache
}

// headerCacheBytes bounds a header cache: about 100k entries of 16-byte
// keys, the default keyspace of bench.
const headerCacheBytes = 8 << 20

// headerEntryOverhead estimates an entry's memory beside its key bytes: the
// map slot (string header and keyMeta) and the key's allocation rounding.
const headerEntryOverhead = 64

func newHeaderCache(max int) headerCache {
	return headerCache{m: make(map[string]keyMeta), max: max}
}

// reset empties the cache unless it already holds headers of generation gen.
func (c *headerCache) reset(gen uint64) {
	if c.gen == gen {
		return
	}
	clear(c.m)
	c.gen, c.bytes = gen, 0
}

func (c *headerCache) get(key []byte) (keyMeta, bool) {
	m, ok := c.m[string(key)]
	return m, ok
}

// add records key's header; key must not be modified afterwards.
func (c *headerCache) add(key string, m keyMeta) {
	if c.max == 0 {
		return
	}
	if _, ok := c.m[key]; ok {
		c.m[key] = m
		return
	}
	size := len(key) + headerEntryOverhead
	for c.bytes+size > c.max && len(c.m) > 0 {
		c.evictOne()
	}
	c.m[key] = m
	c.bytes += size
}

func (c *headerCache) evictOne() {
	for k := range c.m {
		delete(c.m, k)
		c.bytes -= len(k) + headerEntryOverhead
		return
	}
}
