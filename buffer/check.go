package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// This file reads bbolt's on-disk format (format version 2) through plain
// reads, never through a memory map. bbolt itself trusts its file: opened for
// writing with NoFreelistSync it walks the whole page tree in a goroutine of
// its own to rebuild the freelist, and a damaged page there ends the process
// (a panic in a goroutine nobody can recover, or a SIGBUS when a page lies
// past the end of a truncated file). So before bbolt sees a file, checkFile
// walks the same tree with pread and bounds checks; only a file that passes
// is handed to bbolt, anything else goes to salvage.
//
// Format facts used here (bbolt internal/common): a page starts with a
// 16-byte header {id u64, flags u16, count u16, overflow u32}; branch
// elements are {pos u32, ksize u32, pgid u64}, leaf elements are
// {flags u32, pos u32, ksize u32, vsize u32}, each 16 bytes, with pos counted
// from the element's own offset; a bucket value starts with {root u64,
// sequence u64} and, when root is 0, holds its root page inline. The meta
// page carries {magic, version, pageSize, flags u32; root bucket; freelist,
// high-water mark, txid u64; checksum u64}, the checksum being FNV-64a of
// the preceding meta bytes. Integers are in the machine's byte order.

const (
	pageHeaderSize = 16
	elemSize       = 16
	bucketHdrSize  = 16

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	metaPageFlag     = 0x04
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	metaOffset   = pageHeaderSize
	metaSumStart = metaOffset
	metaSumEnd   = metaOffset + 56 // checksum field follows
	metaEnd      = metaSumEnd + 8

	minPageSize = 1 << 10
	maxPageSize = 1 << 16
	maxDepth    = 64 // far above any real tree; stops cycles in damaged files
)

var ne = binary.NativeEndian

// errDamaged marks a file that is not safe to hand to bbolt.
var errDamaged = errors.New("damaged")

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64 // high-water mark: first page id not in use
	txid     uint64
}

// parseMeta validates and decodes meta page id (b starts at the page
// header). Like bbolt's own check, it also wants the page header to say
// "meta page id", though bbolt's checksum covers only the meta fields.
func parseMeta(b []byte, id uint64) (boltMeta, error) {
	var m boltMeta
	if len(b) < metaEnd {
		return m, errors.New("meta page cut short")
	}
	if ne.Uint64(b) != id || ne.Uint16(b[8:]) != metaPageFlag {
		return m, fmt.Errorf("page header says page %d with flags %#x, want meta page %d", ne.Uint64(b), ne.Uint16(b[8:]), id)
	}
	if ne.Uint32(b[metaOffset:]) != boltMagic {
		return m, errors.New("meta page has no bbolt magic")
	}
	if v := ne.Uint32(b[metaOffset+4:]); v != boltVersion {
		return m, fmt.Errorf("meta page has format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[metaSumStart:metaSumEnd])
	if ne.Uint64(b[metaSumEnd:]) != h.Sum64() {
		return m, errors.New("meta page checksum mismatch")
	}
	m.pageSize = ne.Uint32(b[metaOffset+8:])
	m.root = ne.Uint64(b[metaOffset+16:])
	m.freelist = ne.Uint64(b[metaOffset+32:])
	m.hwm = ne.Uint64(b[metaOffset+40:])
	m.txid = ne.Uint64(b[metaOffset+48:])
	return m, nil
}

// readMetas reads both meta pages. Page 0 is at offset 0; page 1 one page
// further, so a valid page 0 also gives the page size. When page 0 is bad the
// usual page sizes are tried for page 1.
func readMetas(r io.ReaderAt, size int64) (m [2]boltMeta, errs [2]error) {
	buf := make([]byte, metaEnd)
	if _, err := r.ReadAt(buf, 0); err != nil {
		errs[0] = fmt.Errorf("read meta page 0: %w", err)
	} else {
		m[0], errs[0] = parseMeta(buf, 0)
	}
	sizes := []uint32{m[0].pageSize}
	if errs[0] != nil || !validPageSize(m[0].pageSize) {
		sizes = nil
		for ps := uint32(minPageSize); ps <= maxPageSize; ps <<= 1 {
			sizes = append(sizes, ps)
		}
	}
	errs[1] = errors.New("meta page 1 not found")
	for _, ps := range sizes {
		if int64(ps)+metaEnd > size {
			continue
		}
		if _, err := r.ReadAt(buf, int64(ps)); err != nil {
			errs[1] = fmt.Errorf("read meta page 1: %w", err)
			continue
		}
		mm, err := parseMeta(buf, 1)
		if err != nil {
			errs[1] = err
			continue
		}
		if mm.pageSize != ps {
			errs[1] = fmt.Errorf("meta page 1 at offset %d claims page size %d", ps, mm.pageSize)
			continue
		}
		m[1], errs[1] = mm, nil
		break
	}
	return m, errs
}

func validPageSize(ps uint32) bool {
	return ps >= minPageSize && ps <= maxPageSize && ps&(ps-1) == 0
}

// checkFile reports whether the bbolt file behind r can be opened by bbolt
// for writing without risk, and otherwise what is wrong with it (wrapping
// errDamaged). It requires both meta pages to be valid: bbolt would silently
// fall back to an older one, losing the newest committed transaction and with
// it the record of sequence numbers already handed out.
func checkFile(r io.ReaderAt, size int64) error {
	if size < 2*minPageSize {
		return fmt.Errorf("%w: %d bytes is too short for a bbolt file", errDamaged, size)
	}
	metas, errs := readMetas(r, size)
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%w: meta page %d: %v", errDamaged, i, err)
		}
	}
	if metas[0].pageSize != metas[1].pageSize || !validPageSize(metas[0].pageSize) {
		return fmt.Errorf("%w: meta pages disagree on page size (%d, %d)", errDamaged, metas[0].pageSize, metas[1].pageSize)
	}
	m := metas[0]
	if metas[1].txid > m.txid {
		m = metas[1]
	}
	c := &checker{r: r, psz: int64(m.pageSize), hwm: m.hwm}
	if m.hwm < 3 || m.hwm > uint64(size)/uint64(m.pageSize) {
		return fmt.Errorf("%w: high-water mark page %d lies beyond the end of the file (%d bytes, page size %d): truncated",
			errDamaged, m.hwm, size, m.pageSize)
	}
	c.seen = make([]uint64, m.hwm/64+1)
	if m.freelist != noFreelist {
		if err := c.checkFreelist(m.freelist); err != nil {
			return fmt.Errorf("%w: %v", errDamaged, err)
		}
	}
	if _, _, err := c.walk(m.root, nil, nil, 0, true); err != nil {
		return fmt.Errorf("%w: %v", errDamaged, err)
	}
	return nil
}

type checker struct {
	r     io.ReaderAt
	psz   int64
	hwm   uint64
	seen  []uint64 // bitset of page ids already reached
	freed []uint64 // bitset of page ids a persisted freelist lists (nil: none)
	// bufs holds one page buffer per tree depth: a page is needed only
	// while its subtree is walked, and deeper pages use deeper buffers.
	// (A copy per page made the check of a 165 MB file allocate 165 MB.)
	bufs [][]byte
}

// page reads page id with its overflow pages into the buffer of depth and
// checks the header. The result is valid until the next page read at the
// same depth.
func (c *checker) page(id uint64, wantFlags uint16, depth int) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page %d is outside [2, %d)", id, c.hwm)
	}
	for len(c.bufs) <= depth {
		c.bufs = append(c.bufs, nil)
	}
	if cap(c.bufs[depth]) < int(c.psz) {
		c.bufs[depth] = make([]byte, c.psz)
	}
	b := c.bufs[depth][:c.psz]
	if _, err := c.r.ReadAt(b, int64(id)*c.psz); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	if got := ne.Uint64(b); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	if flags := ne.Uint16(b[8:]); flags != wantFlags && !(wantFlags == 0 && (flags == branchPageFlag || flags == leafPageFlag)) {
		return nil, fmt.Errorf("page %d has unexpected type flags %#x", id, flags)
	}
	over := uint64(ne.Uint32(b[12:]))
	if id+over >= c.hwm {
		return nil, fmt.Errorf("page %d claims %d overflow pages past the high-water mark %d", id, over, c.hwm)
	}
	for p := id; p <= id+over; p++ {
		if c.freed != nil && c.freed[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("page %d is in use and in the freelist", p)
		}
		if c.seen[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("page %d is referenced twice", p)
		}
		c.seen[p/64] |= 1 << (p % 64)
	}
	if over > 0 {
		big := make([]byte, (over+1)*uint64(c.psz))
		if _, err := c.r.ReadAt(big, int64(id)*c.psz); err != nil {
			return nil, fmt.Errorf("read page %d with %d overflow pages: %w", id, over, err)
		}
		return big, nil
	}
	return b, nil
}

func (c *checker) checkFreelist(id uint64) error {
	b, err := c.page(id, freelistPageFlag, 0)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	n, start := uint64(ne.Uint16(b[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF {
		n, start = ne.Uint64(b[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(b))-start)/8 {
		return fmt.Errorf("freelist page %d claims %d ids, more than fit", id, n)
	}
	c.freed = make([]uint64, len(c.seen))
	for i := uint64(0); i < n; i++ {
		p := ne.Uint64(b[start+8*i:])
		if p < 2 || p >= c.hwm {
			return fmt.Errorf("freelist page %d lists page %d outside [2, %d)", id, p, c.hwm)
		}
		if c.freed[p/64]&(1<<(p%64)) != 0 || c.seen[p/64]&(1<<(p%64)) != 0 {
			return fmt.Errorf("freelist page %d lists page %d twice or lists itself", id, p)
		}
		c.freed[p/64] |= 1 << (p % 64)
	}
	return nil
}

// span returns b[off : off+n] or an error if it is out of bounds.
func span(b []byte, off, n uint64) ([]byte, bool) {
	if off > uint64(len(b)) || n > uint64(len(b))-off {
		return nil, false
	}
	return b[off : off+n], true
}

// walk checks the subtree at page id: structure, bounds and key order,
// with every key in [lo, hi) (nil means unbounded). Beyond what bbolt's own
// check demands it enforces what bbolt's write path asserts and a sound
// tree always has: non-empty keys, each branch key equal to its child's
// first key, and no underfilled inner page (a non-root branch has two
// children or more, a non-root leaf one key or more). It returns the first
// and last key of the subtree.
func (c *checker) walk(id uint64, lo, hi []byte, depth int, root bool) (first, last []byte, err error) {
	if depth > maxDepth {
		return nil, nil, fmt.Errorf("page %d: tree deeper than %d levels", id, maxDepth)
	}
	b, err := c.page(id, 0, depth)
	if err != nil {
		return nil, nil, err
	}
	if ne.Uint16(b[8:]) == leafPageFlag {
		return c.leaf(b, id, lo, hi, depth, root)
	}
	n := uint64(ne.Uint16(b[10:]))
	if n == 0 || pageHeaderSize+n*elemSize > uint64(len(b)) {
		return nil, nil, fmt.Errorf("branch page %d: %d elements do not fit", id, n)
	}
	if n < 2 && !root {
		return nil, nil, fmt.Errorf("branch page %d has a single child", id)
	}
	keys := make([][]byte, n)
	for i := uint64(0); i < n; i++ {
		e := pageHeaderSize + i*elemSize
		k, ok := span(b, e+uint64(ne.Uint32(b[e:])), uint64(ne.Uint32(b[e+4:])))
		if !ok || len(k) == 0 {
			return nil, nil, fmt.Errorf("branch page %d: key %d empty or out of bounds", id, i)
		}
		keys[i] = k
	}
	prev := lo
	for i := uint64(0); i < n; i++ {
		if err := keyInRange(keys[i], prev, hi, i == 0); err != nil {
			return nil, nil, fmt.Errorf("branch page %d key %d: %v", id, i, err)
		}
		upper := hi
		if i+1 < n {
			upper = keys[i+1]
		}
		e := pageHeaderSize + i*elemSize
		cf, cl, err := c.walk(ne.Uint64(b[e+8:]), keys[i], upper, depth+1, false)
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(cf, keys[i]) {
			return nil, nil, fmt.Errorf("branch page %d key %d is not the first key of its child", id, i)
		}
		if i == 0 {
			first = keys[0] // equal, and in this page's buffer, which outlives the child's
		}
		// cl lies in the child's buffer: it is compared with keys[i+1]
		// (or by the caller) before another page is read at that depth.
		prev, last = cl, cl
	}
	return first, last, nil
}

// keyInRange mirrors the order bbolt's consistency check demands: strictly
// ascending keys, the first not below the parent's bound, all below hi.
func keyInRange(k, prev, hi []byte, first bool) error {
	if prev != nil {
		cmp := bytes.Compare(prev, k)
		if cmp > 0 || (cmp == 0 && !first) {
			return errors.New("keys out of order")
		}
	}
	if hi != nil && bytes.Compare(k, hi) >= 0 {
		return errors.New("key not below its upper bound")
	}
	return nil
}

// leaf checks a leaf page (or an inline bucket page) and the buckets it holds.
func (c *checker) leaf(b []byte, id uint64, lo, hi []byte, depth int, root bool) (first, last []byte, err error) {
	n := uint64(ne.Uint16(b[10:]))
	if pageHeaderSize+n*elemSize > uint64(len(b)) {
		return nil, nil, fmt.Errorf("leaf page %d: %d elements do not fit", id, n)
	}
	if n == 0 && !root {
		return nil, nil, fmt.Errorf("leaf page %d is empty but not a root", id)
	}
	prev := lo
	for i := uint64(0); i < n; i++ {
		e := pageHeaderSize + i*elemSize
		flags := ne.Uint32(b[e:])
		ksize := uint64(ne.Uint32(b[e+8:]))
		kv, ok := span(b, e+uint64(ne.Uint32(b[e+4:])), ksize+uint64(ne.Uint32(b[e+12:])))
		if !ok || ksize == 0 {
			return nil, nil, fmt.Errorf("leaf page %d: element %d empty or out of bounds", id, i)
		}
		k, v := kv[:ksize], kv[ksize:]
		if err := keyInRange(k, prev, hi, i == 0); err != nil {
			return nil, nil, fmt.Errorf("leaf page %d key %d: %v", id, i, err)
		}
		if i == 0 {
			first = k
		}
		prev, last = k, k
		if flags&bucketLeafFlag == 0 {
			continue
		}
		if len(v) < bucketHdrSize {
			return nil, nil, fmt.Errorf("leaf page %d: bucket %q header cut short", id, k)
		}
		if rootPage := ne.Uint64(v); rootPage != 0 {
			if _, _, err := c.walk(rootPage, nil, nil, depth+1, true); err != nil {
				return nil, nil, fmt.Errorf("bucket %q: %w", k, err)
			}
			continue
		}
		inline := v[bucketHdrSize:]
		if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != leafPageFlag {
			return nil, nil, fmt.Errorf("leaf page %d: inline bucket %q is not a leaf page", id, k)
		}
		if depth+1 > maxDepth {
			return nil, nil, fmt.Errorf("leaf page %d: buckets nested deeper than %d", id, maxDepth)
		}
		if _, _, err := c.leaf(inline, id, nil, nil, depth+1, true); err != nil {
			return nil, nil, fmt.Errorf("inline bucket %q: %w", k, err)
		}
	}
	return first, last, nil
}
