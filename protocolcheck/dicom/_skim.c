/* Fast-forward over the DICOM elements the lean header reader does not need.
 *
 * protocolcheck.fastheaders walks the top-level elements of a file in Python. Most of the ~250
 * elements of a real header are neither kept nor checked: the walk only steps over them by their
 * length. This module does that stepping in C and stops at the first element the Python walk must
 * look at, so the Python loop runs once per *interesting* element instead of once per element.
 *
 * It never decides anything: it skips an element only when the Python walk would do nothing with it
 * but step over it, by exactly the rules of fastheaders.py, from tables that fastheaders.py builds
 * and passes to configure(). Without this module the Python walk gives the same results (tested).
 *
 * explicit(buf, rel, avail, stop, out) -> rel of the first element not skipped (explicit VR little endian)
 * implicit(buf, rel, stop, out)        -> the same for implicit VR little endian
 *
 * ``buf`` is a bytes object holding part of the file, ``rel`` a position in it, ``avail`` the number
 * of bytes from the start of ``buf`` to the end of the file, ``stop`` where the dataset ends (the end
 * of a defined-length item; ``avail`` otherwise). A returned position past the buffer means "read
 * more first"; the Python walk then refills and carries on. The tables are the same at every depth:
 * they list what any level of the walk keeps (a superset is safe: the walk steps over the rest).
 *
 * sequence(buf, rel, end, avail, depth) -> rel after a sequence none of whose items the walk keeps,
 * or -1 when the Python walk must walk it (anything unusual: implicit VR items, UN, private creators of
 * odd VRs, character sets, whatever is not wholly in ``buf``). ``end`` is -1 for undefined length,
 * ``depth`` the nesting depth of its items. It accepts exactly what fastheaders' sequence() and
 * dataset() accept when they keep nothing, and leaves every error for them to report.
 *
 * items(buf, rel, end, avail, depth, want) walks a sequence whose items keep only plain elements (the
 * ones ``want`` lists by swapped tag): (position after, [one dict per item]) or None for the walk.
 *
 * cached(top, specs, fields) does _fields' decoded-value cache lookups in one pass (see below).
 *
 * With a dict as ``out`` (the top level), a plain element the top level keeps is stored there as the
 * walk would store it, ``out[keyword] = (VR, value bytes)``, and the skim goes on; ``None`` stops at it.
 * At the top level, a sequence nothing is kept from is walked as sequence() would (explicit VR), and
 * one whose items keep plain elements only is walked as items() does and stored under its keyword.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NOT_SHORT 255 /* explicit VR code that is not a short (16-bit length) VR */
#define IS_KIND 254   /* IS: the value must be a plain integer string */

static PyObject *tables = NULL; /* keeps the configured bytes objects alive */
static const uint8_t *short_kind = NULL;     /* [65536] explicit VR code -> value size, IS_KIND, NOT_SHORT */
static const uint8_t *long_skip = NULL;      /* [65536] explicit VR code -> 1 if a long VR skippable by length */
static const uint32_t *wanted = NULL;        /* sorted "swapped" tags the walk keeps */
static Py_ssize_t n_wanted = 0;
static const uint8_t *private_groups = NULL; /* entries of 2-byte group + 32-byte offset mask */
static Py_ssize_t n_private = 0;
static const uint32_t *plain_tags = NULL;    /* implicit VR: sorted swapped standard tags of short VRs */
static const uint8_t *plain_kinds = NULL;    /* ... and their value sizes (IS_KIND for IS) */
static Py_ssize_t n_plain = 0;
static const uint32_t *top_tags = NULL;      /* sorted swapped tags kept at the top level */
static Py_ssize_t n_top = 0;
static PyObject *top_keywords = NULL;        /* tuple: keyword to store each under, None: the walk decides */
static PyObject *top_vrs = NULL;             /* tuple: dictionary VR of each (implicit VR files) */
static PyObject *top_sequences = NULL;       /* dict: swapped tag -> (keyword, want) of top-level sequences
                                                whose items keep plain elements only */

#define VR(a, b) ((uint16_t)((a) | ((b) << 8))) /* an explicit VR as its two bytes read little-endian */
#define UNDEFINED 0xFFFFFFFFu
#define MAX_DEPTH 16 /* fastheaders._MAX_DEPTH */

static inline uint32_t u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Index of tag in a sorted array, or -1. */
static Py_ssize_t find(const uint32_t *table, Py_ssize_t n, uint32_t tag) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        uint32_t v = table[mid];
        if (v == tag) return mid;
        if (v < tag) lo = mid + 1; else hi = mid;
    }
    return -1;
}

/* Whether the walk looks at this private element: a creator, or an offset headers.py reads. */
static inline int private_interesting(uint32_t swapped) {
    uint16_t group = swapped & 0xFFFF, elem = swapped >> 16;
    if (elem <= 0xFF) return 1;
    for (Py_ssize_t i = 0; i < n_private; i++) {
        const uint8_t *entry = private_groups + i * 34;
        if (u16(entry) == group) {
            uint8_t offset = elem & 0xFF;
            return (entry[2 + (offset >> 3)] >> (offset & 7)) & 1;
        }
    }
    return 0;
}

/* An IS value pydicom converts without error: only digits, signs, spaces, backslashes, NULs. */
static inline int plain_integer_string(const uint8_t *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == ' ' || c == '\\' || c == 0)) return 0;
    }
    return 1;
}

/* Value checks of a short element the walk would otherwise make itself; 1 if they pass. */
static inline int value_ok(uint8_t kind, const uint8_t *value, Py_ssize_t length, Py_ssize_t in_buffer) {
    if (kind == IS_KIND) return length <= in_buffer && plain_integer_string(value, length);
    return kind == 0 || length % kind == 0;
}

/* Store a kept top-level element in ``out``: 1 if stored, 0 if the walk must look at it, -1 on error. */
static int capture(PyObject *out, uint32_t swapped, PyObject *vr, const uint8_t *value, Py_ssize_t length) {
    Py_ssize_t index = find(top_tags, n_top, swapped);
    if (index < 0) return 0;
    PyObject *keyword = PyTuple_GET_ITEM(top_keywords, index);
    if (keyword == Py_None) return 0;
    if (PyTuple_Check(keyword)) { /* (keyword,): kept once; a second one is the walk's to judge */
        keyword = PyTuple_GET_ITEM(keyword, 0);
        int seen = PyDict_Contains(out, keyword);
        if (seen) return seen < 0 ? -1 : 0;
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)value, length);
    if (raw == NULL) return -1;
    PyObject *pair = PyTuple_Pack(2, vr, raw);
    Py_DECREF(raw);
    if (pair == NULL) return -1;
    int failed = PyDict_SetItem(out, keyword, pair);
    Py_DECREF(pair);
    return failed ? -1 : 1;
}

static int ready(void);
static Py_ssize_t skip_items(const uint8_t *buf, Py_ssize_t len, Py_ssize_t rel, Py_ssize_t end, Py_ssize_t avail,
                             int depth, PyObject *want, PyObject *items);

#define ERROR (-2) /* a Python exception is set */

/* Keep one element of an item when ``want`` (swapped tag -> keyword) lists it: 1 kept, 0 not listed,
 * -1 for the walk to decide (a marked keyword, a value not in the buffer), ERROR. */
static int keep(PyObject *want, PyObject *item, uint32_t swapped, const uint8_t *vr, const uint8_t *value,
                Py_ssize_t length, Py_ssize_t in_buffer) {
    PyObject *key = PyLong_FromUnsignedLong(swapped);
    if (key == NULL) return ERROR;
    PyObject *keyword = PyDict_GetItemWithError(want, key); /* borrowed */
    Py_DECREF(key);
    if (keyword == NULL) return PyErr_Occurred() ? ERROR : 0;
    if (!PyUnicode_Check(keyword) || PyUnicode_GET_LENGTH(keyword) == 0 || PyUnicode_READ_CHAR(keyword, 0) < ' ')
        return -1;
    if (length > in_buffer) return -1;
    PyObject *vr_text = PyUnicode_FromStringAndSize((const char *)vr, 2);
    if (vr_text == NULL) return ERROR;
    PyObject *raw = PyBytes_FromStringAndSize((const char *)value, length);
    if (raw == NULL) {
        Py_DECREF(vr_text);
        return ERROR;
    }
    PyObject *pair = PyTuple_Pack(2, vr_text, raw);
    Py_DECREF(vr_text);
    Py_DECREF(raw);
    if (pair == NULL) return ERROR;
    int failed = PyDict_SetItem(item, keyword, pair);
    Py_DECREF(pair);
    return failed ? ERROR : 1;
}

/* The dataset of one explicit VR item from ``rel`` (``end`` -1: up to its delimiter): the position after
 * it, -1 for the Python walk to decide, or ERROR. Mirrors fastheaders' dataset(): with ``want`` NULL
 * nothing is kept; else the plain elements ``want`` lists are stored in ``item`` as (VR, value). */
static Py_ssize_t skip_dataset(const uint8_t *buf, Py_ssize_t len, Py_ssize_t rel, Py_ssize_t end, Py_ssize_t avail,
                               int depth, PyObject *want, PyObject *item) {
    for (;;) {
        if (end >= 0 && rel >= end) return rel == end ? rel : -1;
        if (rel + 8 > len) return -1;
        const uint8_t *p = buf + rel;
        uint32_t swapped = u32(p);
        uint16_t group = swapped & 0xFFFF, elem = swapped >> 16;
        uint16_t code = u16(p + 4);
        uint8_t kind = short_kind[code];
        if (kind != NOT_SHORT && group < 0x7FE0) {
            Py_ssize_t length = u16(p + 6);
            if (!value_ok(kind, p + 8, length, len - rel - 8)) return -1;
            if (group & 1) {
                if (elem >= 0x10 && elem <= 0xFF && (code != VR('L', 'O') || want != NULL))
                    return -1; /* a creator of an odd VR, or one the walk records for a kept item */
            } else if (swapped == 0x00050008) {
                return -1; /* a character set inside an item */
            } else if (want != NULL) {
                int kept = keep(want, item, swapped, p + 4, p + 8, length, len - rel - 8);
                if (kept < 0) return kept;
            }
            rel += 8 + length;
            continue;
        }
        if (group == 0xFFFE) {
            if (elem == 0xE00D && end < 0 && u32(p + 4) == 0) return rel + 8; /* item delimiter */
            return -1;
        }
        if (swapped == 0x00050008) return -1; /* a character set (of an odd VR) inside an item */
        Py_ssize_t length, head;
        if (kind != NOT_SHORT) { /* a short VR in a group from 7FE0 on */
            length = u16(p + 6);
            head = 8;
        } else if (long_skip[code] || code == VR('S', 'Q') || code == VR('S', 'V') || code == VR('U', 'V')) {
            if (rel + 12 > len) return -1;
            length = u32(p + 8);
            head = 12;
            kind = code == VR('S', 'V') || code == VR('U', 'V') ? 8 : 0;
        } else {
            return -1; /* UN (read again with a dictionary VR) or an unknown VR */
        }
        if ((group & 1) && elem >= 0x10 && elem <= 0xFF && (code != VR('L', 'O') || want != NULL))
            return -1; /* a creator of an odd VR, or one the walk records for a kept item */
        rel += head;
        if (code == VR('S', 'Q') || length == (Py_ssize_t)UNDEFINED) {
            if (code != VR('S', 'Q') || depth >= MAX_DEPTH) return -1;
            if (want != NULL && !(group & 1)) { /* a kept item's sequence: only one listed nowhere is skipped */
                PyObject *key = PyLong_FromUnsignedLong(swapped);
                if (key == NULL) return ERROR;
                int listed = PyDict_Contains(want, key);
                Py_DECREF(key);
                if (listed) return listed < 0 ? ERROR : -1;
            }
            rel = skip_items(buf, len, rel, length == (Py_ssize_t)UNDEFINED ? -1 : rel + length, avail, depth + 1,
                             NULL, NULL);
            if (rel < 0) return rel;
            continue;
        }
        if (rel + length > avail || !value_ok(kind, buf + rel, length, len - rel)) return -1;
        if (want != NULL && !(group & 1)) {
            int kept = keep(want, item, swapped, p + 4, buf + rel, length, len - rel);
            if (kept < 0) return kept;
        }
        rel += length;
    }
}

/* The items of an explicit VR sequence whose value starts at ``rel``; mirrors fastheaders' sequence().
 * With ``want``, each item's kept elements go into a new dict appended to ``items``. */
static Py_ssize_t skip_items(const uint8_t *buf, Py_ssize_t len, Py_ssize_t rel, Py_ssize_t end, Py_ssize_t avail,
                             int depth, PyObject *want, PyObject *items) {
    for (;;) {
        if (end >= 0 && rel >= end) return rel == end ? rel : -1;
        if (rel + 8 > len) return -1;
        uint16_t group = u16(buf + rel), elem = u16(buf + rel + 2);
        Py_ssize_t length = u32(buf + rel + 4);
        rel += 8;
        if (group == 0xFFFE && elem == 0xE0DD) { /* sequence delimiter */
            if (end >= 0 || length != 0) return -1;
            return rel;
        }
        if (group != 0xFFFE || elem != 0xE000) return -1;
        Py_ssize_t item_end = length == (Py_ssize_t)UNDEFINED ? -1 : rel + length;
        if (item_end > avail) return -1;
        if (item_end != rel) { /* an item may be implicit VR inside an explicit sequence: the walk decides */
            if (rel + 6 > len) return -1;
            const uint8_t *h = buf + rel;
            if (!(h[4] > 0x40 && h[4] < 0x5B && h[5] > 0x40 && h[5] < 0x5B) && memcmp(h, "\xfe\xff\x0d\xe0", 4) != 0)
                return -1;
        }
        if (want == NULL) {
            rel = skip_dataset(buf, len, rel, item_end, avail, depth, NULL, NULL);
            if (rel < 0) return rel;
            continue;
        }
        PyObject *item = PyDict_New();
        if (item == NULL) return ERROR;
        rel = skip_dataset(buf, len, rel, item_end, avail, depth, want, item);
        if (rel >= 0 && PyList_Append(items, item) < 0) rel = ERROR;
        Py_DECREF(item);
        if (rel < 0) return rel;
    }
}

/* The (rel, end, avail, depth) arguments of sequence() and items(), after ``buf``: 1 usable, 0 out of
 * range (the walk decides), -1 with an exception set. */
static int walk_args(PyObject *const *args, Py_ssize_t *rel, Py_ssize_t *end, Py_ssize_t *avail, int *depth) {
    Py_ssize_t values[4];
    for (int i = 0; i < 4; i++) {
        values[i] = PyLong_AsSsize_t(args[i + 1]);
        if (values[i] == -1 && PyErr_Occurred()) return -1;
    }
    if (!ready()) return -1;
    *rel = values[0];
    *end = values[1] < 0 ? -1 : values[1];
    *avail = values[2];
    if (*rel < 0 || values[3] < 0 || values[3] > MAX_DEPTH) return 0;
    *depth = (int)values[3];
    return 1;
}

static PyObject *sequence_(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "sequence(buf: bytes, rel, end, avail, depth)");
        return NULL;
    }
    Py_ssize_t rel, end, avail;
    int depth, usable = walk_args(args, &rel, &end, &avail, &depth);
    if (usable < 0) return NULL;
    if (!usable) return PyLong_FromSsize_t(-1);
    const uint8_t *buf = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t after = skip_items(buf, PyBytes_GET_SIZE(args[0]), rel, end, avail, depth, NULL, NULL);
    return PyLong_FromSsize_t(after < 0 ? -1 : after);
}

/* items(buf, rel, end, avail, depth, want) -> (position after, [item dicts]) or None for the walk. */
static PyObject *items_(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyBytes_Check(args[0]) || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "items(buf: bytes, rel, end, avail, depth, want: dict)");
        return NULL;
    }
    Py_ssize_t rel, end, avail;
    int depth, usable = walk_args(args, &rel, &end, &avail, &depth);
    if (usable < 0) return NULL;
    if (!usable) Py_RETURN_NONE;
    PyObject *items = PyList_New(0);
    if (items == NULL) return NULL;
    const uint8_t *buf = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t after = skip_items(buf, PyBytes_GET_SIZE(args[0]), rel, end, avail, depth, args[5], items);
    if (after < 0) {
        Py_DECREF(items);
        if (after == ERROR) return NULL;
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(nN)", after, items);
}

/* cached(top, specs, fields) -> misses: fastheaders._fields' cache lookups in one pass. For each captured
 * ``keyword: element`` of ``top`` whose ``specs[keyword]`` is ``(field name, how, known)``, a value
 * already decoded for an equal element (``known[element]``) goes straight into ``fields``; the rest come
 * back as ``[(keyword, element, spec), ...]`` for Python to decode. */
static PyObject *cached(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "cached(top: dict, specs: dict, fields: dict)");
        return NULL;
    }
    PyObject *top = args[0], *specs = args[1], *fields = args[2];
    PyObject *misses = PyList_New(0);
    if (misses == NULL) return NULL;
    PyObject *keyword, *element;
    Py_ssize_t at = 0;
    while (PyDict_Next(top, &at, &keyword, &element)) {
        PyObject *spec = PyDict_GetItemWithError(specs, keyword); /* borrowed */
        if (spec == NULL) {
            if (PyErr_Occurred()) goto error;
            continue;
        }
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 3 || !PyDict_Check(PyTuple_GET_ITEM(spec, 2))) {
            PyErr_SetString(PyExc_TypeError, "a spec must be (field name, how, dict)");
            goto error;
        }
        PyObject *value = PyDict_GetItemWithError(PyTuple_GET_ITEM(spec, 2), element); /* borrowed */
        if (value != NULL) {
            if (PyDict_SetItem(fields, PyTuple_GET_ITEM(spec, 0), value) < 0) goto error;
            continue;
        }
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) goto error;
            PyErr_Clear(); /* unhashable (not a plain element): Python decides */
        }
        PyObject *miss = PyTuple_Pack(3, keyword, element, spec);
        if (miss == NULL) goto error;
        int failed = PyList_Append(misses, miss);
        Py_DECREF(miss);
        if (failed) goto error;
    }
    return misses;
error:
    Py_DECREF(misses);
    return NULL;
}

static int ready(void) {
    if (tables == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "protocolcheck._skim: configure() was not called");
        return 0;
    }
    return 1;
}

static int parse(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected, const uint8_t **buf,
                 Py_ssize_t *len, Py_ssize_t *rel, Py_ssize_t *avail, Py_ssize_t *stop) {
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", expected, nargs);
        return 0;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "buf must be bytes");
        return 0;
    }
    *buf = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    *len = PyBytes_GET_SIZE(args[0]);
    *rel = PyLong_AsSsize_t(args[1]);
    if (*rel == -1 && PyErr_Occurred()) return 0;
    if (expected == 5) {
        *avail = PyLong_AsSsize_t(args[2]);
        if (*avail == -1 && PyErr_Occurred()) return 0;
    }
    *stop = PyLong_AsSsize_t(args[expected - 2]);
    if (*stop == -1 && PyErr_Occurred()) return 0;
    if (args[expected - 1] != Py_None && !PyDict_CheckExact(args[expected - 1])) {
        PyErr_SetString(PyExc_TypeError, "out must be a dict or None");
        return 0;
    }
    if (*rel < 0) {
        PyErr_SetString(PyExc_ValueError, "rel must not be negative");
        return 0;
    }
    return ready();
}

static PyObject *explicit_(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const uint8_t *buf;
    Py_ssize_t len, rel, avail = 0, stop;
    if (!parse(args, nargs, 5, &buf, &len, &rel, &avail, &stop)) return NULL;
    PyObject *out = args[4];
    while (rel + 8 <= len && rel < stop) {
        const uint8_t *p = buf + rel;
        uint32_t swapped = u32(p);
        if ((swapped & 0xFFFF) >= 0x7FE0) break; /* Pixel Data, items, delimiters: the walk decides */
        uint16_t code = u16(p + 4);
        uint8_t kind = short_kind[code];
        Py_ssize_t length, head;
        if (kind != NOT_SHORT) {
            length = u16(p + 6);
            head = 8;
            if (!value_ok(kind, p + 8, length, len - rel - 8)) break;
        } else if (code == VR('S', 'Q') && out != Py_None && !(swapped & 1) && rel + 12 <= len) {
            /* a top-level sequence nothing is kept from (not listed, not a DICOMDIR's records), or one
             * whose items keep plain elements only: as fastheaders' element() at depth 0 does, walk its
             * items (and keep theirs); anything unusual: the walk decides */
            if (swapped == 0x12200004) break;
            PyObject *kept = NULL; /* borrowed (keyword, want) */
            if (find(wanted, n_wanted, swapped) >= 0) {
                PyObject *key = PyLong_FromUnsignedLong(swapped);
                if (key == NULL) return NULL;
                kept = PyDict_GetItemWithError(top_sequences, key);
                Py_DECREF(key);
                if (kept == NULL) {
                    if (PyErr_Occurred()) return NULL;
                    break;
                }
            }
            length = u32(p + 8);
            Py_ssize_t end = -1;
            if (length != (Py_ssize_t)UNDEFINED) {
                if (rel + 12 + length > avail) break;
                end = rel + 12 + length;
            }
            Py_ssize_t after;
            if (kept == NULL) {
                after = skip_items(buf, len, rel + 12, end, avail, 1, NULL, NULL);
                if (after < 0) break; /* (never ERROR without ``want``) */
            } else {
                PyObject *items = PyList_New(0);
                if (items == NULL) return NULL;
                after = skip_items(buf, len, rel + 12, end, avail, 1, PyTuple_GET_ITEM(kept, 1), items);
                if (after >= 0 && PyDict_SetItem(out, PyTuple_GET_ITEM(kept, 0), items) < 0) after = ERROR;
                Py_DECREF(items);
                if (after == ERROR) return NULL;
                if (after < 0) break;
            }
            rel = after;
            continue;
        } else {
            if (!long_skip[code] || rel + 12 > len) break;
            length = u32(p + 8);
            head = 12;
            if (length == 0xFFFFFFFF || rel + 12 + length > avail) break;
        }
        if (swapped & 1) {
            if (private_interesting(swapped)) break;
        } else if (find(wanted, n_wanted, swapped) >= 0) {
            if (out == Py_None || head != 8 || rel + 8 + length > len) break;
            PyObject *vr = PyUnicode_FromStringAndSize((const char *)p + 4, 2);
            if (vr == NULL) return NULL;
            int stored = capture(out, swapped, vr, p + 8, length);
            Py_DECREF(vr);
            if (stored < 0) return NULL;
            if (!stored) break;
        }
        rel += head + length;
    }
    return PyLong_FromSsize_t(rel);
}

static PyObject *implicit_(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const uint8_t *buf;
    Py_ssize_t len, rel, avail = 0, stop;
    if (!parse(args, nargs, 4, &buf, &len, &rel, &avail, &stop)) return NULL;
    PyObject *out = args[3];
    while (rel + 12 <= len && rel < stop) { /* the Python walk wants 12 bytes in the buffer at each element */
        const uint8_t *p = buf + rel;
        uint32_t swapped = u32(p);
        if (swapped & 1) break; /* private: its kind depends on the creator, which the walk tracks */
        Py_ssize_t index = find(plain_tags, n_plain, swapped);
        if (index < 0) break; /* sequences, long VRs, unknown tags */
        Py_ssize_t length = u32(p + 4);
        if (length == 0xFFFFFFFF) break;
        if (!value_ok(plain_kinds[index], p + 8, length, len - rel - 8)) break;
        if (find(wanted, n_wanted, swapped) >= 0) {
            if (out == Py_None || rel + 8 + length > len) break;
            Py_ssize_t at = find(top_tags, n_top, swapped);
            if (at < 0) break;
            int stored = capture(out, swapped, PyTuple_GET_ITEM(top_vrs, at), p + 8, length);
            if (stored < 0) return NULL;
            if (!stored) break;
        }
        rel += 8 + length;
    }
    return PyLong_FromSsize_t(rel);
}

static int sized(PyObject *obj, const char *name, Py_ssize_t unit, Py_ssize_t exact) {
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes", name);
        return 0;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(obj);
    if ((exact && n != exact) || n % unit) {
        PyErr_Format(PyExc_ValueError, "%s has a wrong size (%zd bytes)", name, n);
        return 0;
    }
    return 1;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *shorts, *longs, *want, *priv, *ptags, *pkinds, *ttags, *tkeys, *tvrs, *tseqs;
    if (!PyArg_ParseTuple(args, "SSSSSSSO!O!O!:configure", &shorts, &longs, &want, &priv, &ptags, &pkinds, &ttags,
                          &PyTuple_Type, &tkeys, &PyTuple_Type, &tvrs, &PyDict_Type, &tseqs))
        return NULL;
    PyObject *key, *value;
    Py_ssize_t at = 0;
    while (PyDict_Next(tseqs, &at, &key, &value)) {
        if (!PyLong_Check(key) || !PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 2 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(value, 0)) || !PyDict_Check(PyTuple_GET_ITEM(value, 1))) {
            PyErr_SetString(PyExc_ValueError, "top_sequences must map swapped tags to (keyword, dict)");
            return NULL;
        }
    }
    if (!sized(shorts, "short_kinds", 1, 65536) || !sized(longs, "long_skip", 1, 65536) ||
        !sized(want, "wanted", 4, 0) || !sized(priv, "private_groups", 34, 0) || !sized(ptags, "plain_tags", 4, 0) ||
        !sized(pkinds, "plain_kinds", 1, 0) || !sized(ttags, "top_tags", 4, 0))
        return NULL;
    if (PyTuple_GET_SIZE(tkeys) * 4 != PyBytes_GET_SIZE(ttags) || PyTuple_GET_SIZE(tvrs) * 4 != PyBytes_GET_SIZE(ttags)) {
        PyErr_SetString(PyExc_ValueError, "top_keywords, top_vrs and top_tags differ in length");
        return NULL;
    }
    if (PyBytes_GET_SIZE(pkinds) * 4 != PyBytes_GET_SIZE(ptags)) {
        PyErr_SetString(PyExc_ValueError, "plain_kinds and plain_tags differ in length");
        return NULL;
    }
    PyObject *keep = PyTuple_Pack(10, shorts, longs, want, priv, ptags, pkinds, ttags, tkeys, tvrs, tseqs);
    if (keep == NULL) return NULL;
    Py_XSETREF(tables, keep);
    short_kind = (const uint8_t *)PyBytes_AS_STRING(shorts);
    long_skip = (const uint8_t *)PyBytes_AS_STRING(longs);
    wanted = (const uint32_t *)PyBytes_AS_STRING(want);
    n_wanted = PyBytes_GET_SIZE(want) / 4;
    private_groups = (const uint8_t *)PyBytes_AS_STRING(priv);
    n_private = PyBytes_GET_SIZE(priv) / 34;
    plain_tags = (const uint32_t *)PyBytes_AS_STRING(ptags);
    plain_kinds = (const uint8_t *)PyBytes_AS_STRING(pkinds);
    n_plain = PyBytes_GET_SIZE(ptags) / 4;
    top_tags = (const uint32_t *)PyBytes_AS_STRING(ttags);
    n_top = PyBytes_GET_SIZE(ttags) / 4;
    top_keywords = tkeys;
    top_vrs = tvrs;
    top_sequences = tseqs;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(short_kinds, long_skip, wanted, private_groups, plain_tags, plain_kinds, top_tags, top_keywords, "
     "top_vrs, top_sequences): set the tables"},
    {"explicit", (PyCFunction)(void (*)(void))explicit_, METH_FASTCALL,
     "explicit(buf, rel, avail, stop, out) -> position of the first explicit VR element the walk must look at"},
    {"sequence", (PyCFunction)(void (*)(void))sequence_, METH_FASTCALL,
     "sequence(buf, rel, end, avail, depth) -> position after a sequence the walk keeps nothing of, or -1"},
    {"cached", (PyCFunction)(void (*)(void))cached, METH_FASTCALL,
     "cached(top, specs, fields) -> [(keyword, element, spec)] not yet decoded; the rest filled into fields"},
    {"items", (PyCFunction)(void (*)(void))items_, METH_FASTCALL,
     "items(buf, rel, end, avail, depth, want) -> (position after, [kept elements of each item]) or None"},
    {"implicit", (PyCFunction)(void (*)(void))implicit_, METH_FASTCALL,
     "implicit(buf, rel, stop, out) -> position of the first implicit VR element the walk must look at"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "protocolcheck._skim",
    "Fast-forward over DICOM elements the lean header reader skips (see fastheaders.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__skim(void) { return PyModule_Create(&module); }
