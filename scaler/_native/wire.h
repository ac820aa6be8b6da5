/*
 * The protobuf wire reader of scaler._native.otlpwire, and the growable buffers it fills.
 *
 * Every read is bounds-checked against the buffer and returns -1 on malformed input (never
 * reads past `end`); nothing recurses: groups are skipped with an explicit depth limit.
 * Header-only (static functions), included by otlpwire.c alone.
 */
#ifndef SCALER_NATIVE_WIRE_H
#define SCALER_NATIVE_WIRE_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };
#define MAX_GROUP_DEPTH 100

/* ------------------------------------------------------------------ wire reader */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Rd;

/* A varint of up to 10 bytes; bits past the 64th are dropped, as protobuf (upb) drops them (a
 * 10th byte above 1 is valid there), and an 11th byte is malformed. */
static inline int rd_varint(Rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static inline int rd_fixed64(Rd *r, uint64_t *out) {
    if (r->end - r->p < 8) return -1;
    memcpy(out, r->p, 8); /* little-endian hosts only: checked at import */
    r->p += 8;
    return 0;
}

/* A tag whatever its field number: inside a skipped group protobuf (upb) accepts field 0. */
static inline int rd_tag_any(Rd *r, uint32_t *field, int *wt) {
    uint64_t tag;
    if (rd_varint(r, &tag) < 0 || tag > UINT32_MAX) return -1;
    *field = (uint32_t)(tag >> 3);
    *wt = (int)(tag & 7);
    return 0;
}

/* A field's tag: field number 0 is malformed. */
static inline int rd_tag(Rd *r, uint32_t *field, int *wt) {
    return rd_tag_any(r, field, wt) < 0 || *field == 0 ? -1 : 0;
}

static inline int rd_len(Rd *r, Rd *sub) {
    uint64_t len;
    if (rd_varint(r, &len) < 0 || len > (uint64_t)(r->end - r->p)) return -1;
    sub->p = r->p;
    sub->end = r->p + len;
    r->p += len;
    return 0;
}

/* Skip the value of a field whose tag was just read. Groups are skipped iteratively. */
static inline int rd_skip(Rd *r, uint32_t field, int wt) {
    uint64_t v;
    Rd sub;
    switch (wt) {
    case WT_VARINT: return rd_varint(r, &v);
    case WT_I64: return rd_fixed64(r, &v);
    case WT_LEN: return rd_len(r, &sub);
    case WT_I32:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    case WT_SGROUP: {
        uint32_t stack[MAX_GROUP_DEPTH];
        int depth = 0;
        stack[depth++] = field;
        while (depth) {
            uint32_t f;
            int w;
            if (rd_tag_any(r, &f, &w) < 0) return -1;
            if (w == WT_EGROUP) {
                if (stack[--depth] != f) return -1;
            } else if (w == WT_SGROUP) {
                if (depth == MAX_GROUP_DEPTH) return -1;
                stack[depth++] = f;
            } else if (rd_skip(r, f, w) < 0) { /* not a group: no recursion past one level */
                return -1;
            }
        }
        return 0;
    }
    default: return -1; /* a stray end-group or wire types 6, 7 */
    }
}

/* ------------------------------------------------------------------ growable buffers */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} Buf;

/* A block with room for `need` items of `size` bytes: `data` itself (capacity `*cap` items)
 * when it has room, else `data` grown (capacity doubled from `initial`), or NULL with
 * MemoryError (`data` is then kept as it was). */
static inline void *grown(void *data, size_t *cap, size_t need, size_t size, size_t initial) {
    if (data && need <= *cap) return data;
    size_t n = *cap ? *cap : initial;
    while (n < need) n *= 2;
    void *block = PyMem_Realloc(data, n * size);
    if (!block) {
        PyErr_NoMemory();
        return NULL;
    }
    *cap = n;
    return block;
}

static inline int buf_reserve(Buf *b, size_t extra) {
    uint8_t *data = grown(b->data, &b->cap, b->len + extra, 1, 256);
    if (!data) return -1;
    b->data = data;
    return 0;
}

static inline int buf_put(Buf *b, const void *src, size_t n) {
    if (!n) return 0; /* src may be NULL (an empty scratch array): memcpy must not see it */
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static inline int buf_put_u64(Buf *b, uint64_t v) { return buf_put(b, &v, 8); }

/* A length-prefixed chunk, so that the key is an unambiguous concatenation. */
static inline int buf_put_chunk(Buf *b, const uint8_t *p, size_t n) {
    return buf_put_u64(b, (uint64_t)n) < 0 ? -1 : buf_put(b, p, n);
}

typedef struct {
    uint64_t *v;
    size_t len, cap;
} U64s;

static inline int u64s_push(U64s *a, uint64_t v) {
    uint64_t *data = grown(a->v, &a->cap, a->len + 1, sizeof(uint64_t), 64);
    if (!data) return -1;
    a->v = data;
    a->v[a->len++] = v;
    return 0;
}

/* Repeated fixed64 (packed or not) or uint64 varint (packed or not) into `out`. */
static inline int read_repeated(Rd *r, int wt, int fixed, U64s *out) {
    uint64_t v;
    if (wt == WT_LEN) {
        Rd sub;
        if (rd_len(r, &sub) < 0) return -1;
        if (fixed && (sub.end - sub.p) % 8) return -1;
        while (sub.p < sub.end) {
            if ((fixed ? rd_fixed64(&sub, &v) : rd_varint(&sub, &v)) < 0 || u64s_push(out, v) < 0) return -1;
        }
        return 0;
    }
    if ((fixed ? rd_fixed64(r, &v) : rd_varint(r, &v)) < 0) return -1;
    return u64s_push(out, v);
}

#endif /* SCALER_NATIVE_WIRE_H */
