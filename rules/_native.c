/* jiancha.rules._native: the parts of the rules that Python cannot make fast enough.
 *
 * A worker reads a case's record once per batch that holds one of its events, and writes
 * it back after; these are the loops of rules/state_codec.py that cost most of that:
 * - read_facts (read_facts_py there): a record's fact entries (msgspec structs) made the
 *   state's facts again, with the facts of each step while they are in time order;
 * - write_entry (write_entry_py there): a new fact's compact entry, for a fact whose
 *   times are floats (any other it leaves to Python).
 * They compute what the Python functions compute, with the same Python operations where a
 * number could be large, and are held to them by tests/unit/test_native.py.
 * rules/state_codec.py falls back to the Python functions when this module was not built. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

/* set by configure(): the Fact class, STEP_CODES, ATTRIBUTE_CODES, msgspec's Ext type, the
 * Ext code of a sha256 applicant id and its text prefix */
static PyObject *fact_type = NULL;
static PyObject *step_codes = NULL;
static PyObject *attribute_codes = NULL;
static PyObject *ext_type = NULL;
static PyObject *sha256_code = NULL;
static PyObject *sha256_prefix = NULL;
/* STEP_CODES and ATTRIBUTE_CODES the other way: a step's code, an attribute's code */
static PyObject *step_code_of = NULL;
static PyObject *attribute_code_of = NULL;
/* the applicant id's attribute code (in attribute_code_of) */
static PyObject *applicant_code = NULL;
/* the record's fact struct (msgspec), and where each of its fields and each of the Fact's
 * slots lie in an instance: read and written in place, as their member descriptors do
 * (-1: not known, read and built through Python instead) */
static PyTypeObject *entry_type = NULL;
enum { E_EVENT_ID, E_DOING, E_AT, E_ATTRS, E_RECEIVED, E_DEPARTMENT, E_FIELDS };
static Py_ssize_t entry_offsets[E_FIELDS] = {-1, -1, -1, -1, -1, -1};
static int entry_in_place = 0;
static Py_ssize_t fact_offsets[7] = {-1, -1, -1, -1, -1, -1, -1};
static int fact_in_place = 0;

/* interned names and small constants */
static PyObject *s_event_id, *s_doing, *s_at, *s_attrs, *s_received, *s_department;
static PyObject *s_step, *s_actor;
static PyObject *s_code, *s_data, *s_hex, *s_applicant_id, *s_dash, *s_empty;
static PyObject *i_1000, *i_step_mask, *i_step_bits;

static int
intern_all(void)
{
#define INTERN(var, text) if (!(var = PyUnicode_InternFromString(text))) return -1
    INTERN(s_event_id, "event_id");
    INTERN(s_doing, "doing");
    INTERN(s_at, "at");
    INTERN(s_attrs, "attrs");
    INTERN(s_received, "received");
    INTERN(s_department, "department");
    INTERN(s_step, "step");
    INTERN(s_actor, "actor");
    INTERN(s_code, "code");
    INTERN(s_data, "data");
    INTERN(s_hex, "hex");
    INTERN(s_applicant_id, "applicant_id");
    INTERN(s_dash, "-");
    INTERN(s_empty, "");
#undef INTERN
    if (!(i_1000 = PyLong_FromLong(1000))) return -1;
    if (!(i_step_mask = PyLong_FromLong(31))) return -1;
    if (!(i_step_bits = PyLong_FromLong(5))) return -1;
    return 0;
}

/* the offset of ``name``'s slot in instances of ``type`` (an object slot that raises when
 * unset, as ``__slots__`` and msgspec's fields are), or -1 */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name);
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type))
        return -1;
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY))
        return -1;
    return member->offset;
}

static const char *entry_fields[E_FIELDS] = {"event_id", "doing", "at", "attrs", "received",
                                             "department"};
static const char *fact_fields[7] = {"event_id", "step", "at", "actor", "department", "attrs",
                                     "received"};

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *fact, *steps, *attributes, *ext, *code, *prefix, *entry, *step_map, *attribute_map;
    if (!PyArg_ParseTuple(args, "OO!O!OOUO!O!O!:configure", &fact, &PyTuple_Type, &steps,
                          &PyTuple_Type, &attributes, &ext, &code, &prefix, &PyType_Type,
                          &entry, &PyDict_Type, &step_map, &PyDict_Type, &attribute_map))
        return NULL;
    Py_INCREF(step_map); Py_XSETREF(step_code_of, step_map);
    Py_INCREF(attribute_map); Py_XSETREF(attribute_code_of, attribute_map);
    PyObject *code_of_applicant = PyDict_GetItemWithError(attribute_map, s_applicant_id);
    if (code_of_applicant == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "the attribute codes have no applicant_id");
        return NULL;
    }
    Py_INCREF(code_of_applicant); Py_XSETREF(applicant_code, code_of_applicant);
    Py_INCREF(entry);
    Py_XSETREF(entry_type, (PyTypeObject *)entry);
    entry_in_place = 1;
    for (int i = 0; i < E_FIELDS; i++) {
        entry_offsets[i] = slot_offset(entry_type, entry_fields[i]);
        entry_in_place = entry_in_place && entry_offsets[i] >= 0;
    }
    /* a Fact built in place only where calling the class would do nothing more: a
     * dataclass with these slots, no __post_init__, object's __new__ */
    fact_in_place = PyType_Check(fact) &&
        ((PyTypeObject *)fact)->tp_new == PyBaseObject_Type.tp_new &&
        PyObject_HasAttrString(fact, "__dataclass_fields__") &&
        !PyObject_HasAttrString(fact, "__post_init__");
    for (int i = 0; i < 7 && fact_in_place; i++) {
        fact_offsets[i] = slot_offset((PyTypeObject *)fact, fact_fields[i]);
        fact_in_place = fact_offsets[i] >= 0;
    }
    Py_INCREF(fact); Py_XSETREF(fact_type, fact);
    Py_INCREF(steps); Py_XSETREF(step_codes, steps);
    Py_INCREF(attributes); Py_XSETREF(attribute_codes, attributes);
    Py_INCREF(ext); Py_XSETREF(ext_type, ext);
    Py_INCREF(code); Py_XSETREF(sha256_code, code);
    Py_INCREF(prefix); Py_XSETREF(sha256_prefix, prefix);
    Py_RETURN_NONE;
}

/* the value of an exact int within +-2**53 (exact as a double too) in *out: 1; else 0 */
static int
small_int(PyObject *value, long long *out)
{
    if (!PyLong_CheckExact(value))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (v > (1LL << 53) || v < -(1LL << 53))
        return 0;
    *out = v;
    return 1;
}

/* ``sequence[index]`` (a list or tuple) for an index within it, as a new reference; NULL
 * with no error set when the index is not (the caller goes the Python way) */
static PyObject *
item_at(PyObject *sequence, long long index)
{
    if (index < 0)
        return NULL;
    if (PyTuple_CheckExact(sequence) && index < PyTuple_GET_SIZE(sequence))
        return Py_NewRef(PyTuple_GET_ITEM(sequence, index));
    if (PyList_CheckExact(sequence) && index < PyList_GET_SIZE(sequence))
        return Py_NewRef(PyList_GET_ITEM(sequence, index));
    return NULL;
}

/* f"{a}{b}" for a str ``a`` */
static PyObject *
joined(PyObject *a, PyObject *b)
{
    long long n;
    if (PyUnicode_CheckExact(a) && small_int(b, &n)) {
        char digits[32];
        int length = snprintf(digits, sizeof digits, "%lld", n);
        PyObject *text = PyUnicode_FromStringAndSize(digits, length);
        if (text == NULL)
            return NULL;
        PyObject *out = PyUnicode_Concat(a, text);
        Py_DECREF(text);
        return out;
    }
    PyObject *text = PyObject_Format(b, s_empty);
    if (text == NULL)
        return NULL;
    PyObject *out = PyUnicode_Concat(a, text);
    Py_DECREF(text);
    return out;
}

/* state_codec._numbered: 1 and (*stem, *number) set when ``event_id`` ends in a number
 * written as Python writes it, of at most 18 digits; 0 when not; -1 on error */
static int
numbered(PyObject *event_id, PyObject **stem, PyObject **number)
{
    if (PyUnicode_READY(event_id) < 0)
        return -1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(event_id);
    int kind = PyUnicode_KIND(event_id);
    const void *data = PyUnicode_DATA(event_id);
    Py_ssize_t start = n;
    while (start > 0) {
        Py_UCS4 c = PyUnicode_READ(kind, data, start - 1);
        if (c < '0' || c > '9')
            break;
        start--;
    }
    Py_ssize_t digits = n - start;
    if (digits == 0 || digits > 18)
        return 0;
    if (PyUnicode_READ(kind, data, start) == '0' && digits != 1)
        return 0;
    long long value = 0;
    for (Py_ssize_t i = start; i < n; i++)
        value = value * 10 + (long long)(PyUnicode_READ(kind, data, i) - '0');
    *stem = PyUnicode_Substring(event_id, 0, start);
    if (*stem == NULL)
        return -1;
    *number = PyLong_FromLongLong(value);
    if (*number == NULL) {
        Py_CLEAR(*stem);
        return -1;
    }
    return 1;
}

/* state_codec._applicant_id_text */
static PyObject *
applicant_id_text(PyObject *value)
{
    if (PyBytes_CheckExact(value))
        return PyObject_CallMethodNoArgs(value, s_hex);
    if ((PyObject *)Py_TYPE(value) == ext_type) {
        PyObject *code = PyObject_GetAttr(value, s_code);
        if (code == NULL)
            return NULL;
        int same = PyObject_RichCompareBool(code, sha256_code, Py_EQ);
        Py_DECREF(code);
        if (same < 0)
            return NULL;
        if (same) {
            PyObject *data = PyObject_GetAttr(value, s_data);
            if (data == NULL)
                return NULL;
            PyObject *raw = PyBytes_FromObject(data);
            Py_DECREF(data);
            if (raw == NULL)
                return NULL;
            PyObject *hex = PyObject_CallMethodNoArgs(raw, s_hex);
            Py_DECREF(raw);
            if (hex == NULL)
                return NULL;
            PyObject *out = PyUnicode_Concat(sha256_prefix, hex);
            Py_DECREF(hex);
            return out;
        }
    }
    return Py_NewRef(value);
}

/* the fact's attributes by name (a new dict), as state_codec.read_facts_py reads them */
static PyObject *
named_attributes(PyObject *attrs)
{
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    if (attrs == Py_None)
        return out;
    int truth = PyObject_IsTrue(attrs);
    if (truth < 0)
        goto fail;
    if (!truth)
        return out;
    if (!PyDict_Check(attrs)) {  /* as dict.items would not be found */
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute 'items'",
                     Py_TYPE(attrs)->tp_name);
        goto fail;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        if (PyLong_CheckExact(key)) {
            PyObject *name = PyObject_GetItem(attribute_codes, key);
            if (name == NULL)
                goto fail;
            int failed = PyDict_SetItem(out, name, value);
            Py_DECREF(name);
            if (failed < 0)
                goto fail;
        }
        else if (PyDict_SetItem(out, key, value) < 0)
            goto fail;
    }
    PyObject *applicant = PyDict_GetItemWithError(out, s_applicant_id);
    if (applicant == NULL) {
        if (PyErr_Occurred())
            goto fail;
        return out;
    }
    PyObject *text = applicant_id_text(applicant);
    if (text == NULL)
        goto fail;
    int failed = PyDict_SetItem(out, s_applicant_id, text);
    Py_DECREF(text);
    if (failed < 0)
        goto fail;
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* the record's entry of a fact as it was written (no trailing nil) */
static PyObject *
entry_of(PyObject *event_id, PyObject *doing, PyObject *at, PyObject *attrs,
         PyObject *received, PyObject *department)
{
    Py_ssize_t n = department != Py_None ? 6 : received != Py_None ? 5 : attrs != Py_None ? 4 : 3;
    PyObject *entry = PyList_New(n);
    if (entry == NULL)
        return NULL;
    PyObject *items[6] = {event_id, doing, at, attrs, received, department};
    for (Py_ssize_t i = 0; i < n; i++)
        PyList_SET_ITEM(entry, i, Py_NewRef(items[i]));
    return entry;
}

/* an entry's fields read from its slots: 1, or 0 with an error set if one is unset */
static int
read_in_place(PyObject *f, PyObject **event_id, PyObject **doing, PyObject **at,
              PyObject **attrs, PyObject **received, PyObject **department)
{
    PyObject **out[E_FIELDS] = {event_id, doing, at, attrs, received, department};
    for (int i = 0; i < E_FIELDS; i++) {
        PyObject *value = *(PyObject **)((char *)f + entry_offsets[i]);
        if (value == NULL) {
            PyErr_Format(PyExc_AttributeError, "a fact entry has no %s", entry_fields[i]);
            return 0;
        }
        *out[i] = Py_NewRef(value);
    }
    return 1;
}

/* Fact(*values), its slots written as its dataclass __init__ writes them */
static PyObject *
built_in_place(PyObject *const *values)
{
    PyTypeObject *type = (PyTypeObject *)fact_type;
    PyObject *fact = type->tp_alloc(type, 0);
    if (fact == NULL)
        return NULL;
    for (int i = 0; i < 7; i++)
        *(PyObject **)((char *)fact + fact_offsets[i]) = Py_NewRef(values[i]);
    return fact;
}

static PyObject *
read_facts(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "read_facts(kept, names, base, written)");
        return NULL;
    }
    if (fact_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "jiancha.rules._native is not configured");
        return NULL;
    }
    PyObject *kept = args[0], *names = args[1], *base = args[2];
    int written = PyObject_IsTrue(args[3]);
    if (written < 0)
        return NULL;
    PyObject *sequence = PySequence_Fast(kept, "kept must be a sequence");
    if (sequence == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject *facts = PyList_New(0), *entries = written ? PyList_New(0) : Py_NewRef(Py_None);
    PyObject *base_ms = PyNumber_Multiply(base, i_1000);
    PyObject *stem = Py_NewRef(Py_None), *number = PyLong_FromLong(0);
    PyObject *department = PyLong_FromLong(1);
    /* the facts of each step while they are in time order (the summary's), else None */
    PyObject *by_step = PyDict_New();
    double previous_at = -INFINITY;
    PyObject *f_event_id = NULL, *f_doing = NULL, *f_at = NULL, *f_attrs = NULL;
    PyObject *f_received = NULL, *f_department = NULL;
    PyObject *event_id = NULL, *at = NULL, *received = NULL, *attrs = NULL;
    PyObject *step = NULL, *actor = NULL, *dept_name = NULL, *fact = NULL, *tmp = NULL;
    if (facts == NULL || entries == NULL || base_ms == NULL || number == NULL ||
            department == NULL || by_step == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *f = PySequence_Fast_GET_ITEM(sequence, i);
        if (entry_in_place && Py_IS_TYPE(f, entry_type) &&
                read_in_place(f, &f_event_id, &f_doing, &f_at, &f_attrs, &f_received,
                              &f_department))
            ;
        else if (PyErr_Occurred())
            goto fail;
        else if (!(f_event_id = PyObject_GetAttr(f, s_event_id)) ||
            !(f_doing = PyObject_GetAttr(f, s_doing)) ||
            !(f_at = PyObject_GetAttr(f, s_at)) ||
            !(f_attrs = PyObject_GetAttr(f, s_attrs)) ||
            !(f_received = PyObject_GetAttr(f, s_received)) ||
            !(f_department = PyObject_GetAttr(f, s_department)))
            goto fail;
        if (f_department != Py_None)
            Py_SETREF(department, Py_NewRef(f_department));
        if (PyLong_CheckExact(f_event_id)) {
            if (stem == Py_None) {
                PyObject *name = PyObject_GetItem(names, department);
                if (name == NULL)
                    goto fail;
                tmp = PyObject_Format(name, s_empty);
                Py_DECREF(name);
                if (tmp == NULL)
                    goto fail;
                Py_SETREF(stem, PyUnicode_Concat(tmp, s_dash));
                Py_CLEAR(tmp);
                if (stem == NULL)
                    goto fail;
                Py_SETREF(number, Py_NewRef(f_event_id));
            }
            else {
                Py_SETREF(number, PyNumber_Add(number, f_event_id));
                if (number == NULL)
                    goto fail;
            }
            if (!(event_id = joined(stem, number)))
                goto fail;
        }
        else {
            if (!PyUnicode_Check(f_event_id)) {  /* as str.rstrip would not be found */
                PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute 'rstrip'",
                             Py_TYPE(f_event_id)->tp_name);
                goto fail;
            }
            PyObject *new_stem = NULL, *new_number = NULL;
            int found = numbered(f_event_id, &new_stem, &new_number);
            if (found < 0)
                goto fail;
            if (found) {
                Py_SETREF(stem, new_stem);
                Py_SETREF(number, new_number);
            }
            else
                Py_SETREF(stem, Py_NewRef(Py_None));
            event_id = Py_NewRef(f_event_id);
        }
        long long base_value, offset;
        int small_base = small_int(base, &base_value);
        if (small_base && small_int(f_at, &offset) && llabs(base_value + offset) <= (1LL << 53)) {
            /* float(base + at): an integer a double holds exactly */
            if (!(at = PyFloat_FromDouble((double)(base_value + offset))))
                goto fail;
        }
        else if (PyLong_CheckExact(f_at)) {
            if (!(tmp = PyNumber_Add(base, f_at)))
                goto fail;
            at = PyNumber_Float(tmp);
            Py_CLEAR(tmp);
            if (at == NULL)
                goto fail;
        }
        else
            at = Py_NewRef(f_at);
        if (f_received == Py_None)
            received = Py_NewRef(at);
        else if (small_base && llabs(base_value) <= (1LL << 42) &&
                 small_int(f_received, &offset) &&
                 llabs(base_value * 1000 + offset) <= (1LL << 53)) {
            /* (base_ms + received) / 1000: Python divides two ints a double holds exactly
             * as doubles, and so does this */
            if (!(received = PyFloat_FromDouble((double)(base_value * 1000 + offset) / 1000.0)))
                goto fail;
        }
        else if (PyLong_CheckExact(f_received)) {
            if (!(tmp = PyNumber_Add(base_ms, f_received)))
                goto fail;
            received = PyNumber_TrueDivide(tmp, i_1000);
            Py_CLEAR(tmp);
            if (received == NULL)
                goto fail;
        }
        else
            received = Py_NewRef(f_received);
        if (!(attrs = named_attributes(f_attrs)))
            goto fail;
        if (written) {
            PyObject *entry = entry_of(f_event_id, f_doing, f_at, f_attrs, f_received, f_department);
            if (entry == NULL)
                goto fail;
            int failed = PyList_Append(entries, entry);
            Py_DECREF(entry);
            if (failed < 0)
                goto fail;
        }
        long long doing, dept;
        if (small_int(f_doing, &doing) && doing >= 0) {
            step = item_at(step_codes, doing & 31);
            actor = item_at(names, doing >> 5);
        }
        if (step == NULL) {
            if (!(tmp = PyNumber_And(f_doing, i_step_mask)))
                goto fail;
            step = PyObject_GetItem(step_codes, tmp);
            Py_CLEAR(tmp);
            if (step == NULL)
                goto fail;
        }
        if (actor == NULL) {
            if (!(tmp = PyNumber_Rshift(f_doing, i_step_bits)))
                goto fail;
            actor = PyObject_GetItem(names, tmp);
            Py_CLEAR(tmp);
            if (actor == NULL)
                goto fail;
        }
        if (small_int(department, &dept))
            dept_name = item_at(names, dept);
        if (dept_name == NULL && !(dept_name = PyObject_GetItem(names, department)))
            goto fail;
        PyObject *call[7] = {event_id, step, at, actor, dept_name, attrs, received};
        fact = fact_in_place ? built_in_place(call) : PyObject_Vectorcall(fact_type, call, 7, NULL);
        if (fact == NULL || PyList_Append(facts, fact) < 0)
            goto fail;
        if (by_step != Py_None) {
            double moment = PyFloat_Check(at) ? PyFloat_AS_DOUBLE(at) : NAN;
            if (isnan(moment) || moment < previous_at)  /* out of order: sorted in Python */
                Py_SETREF(by_step, Py_NewRef(Py_None));
            else {
                previous_at = moment;
                PyObject *same = PyDict_GetItemWithError(by_step, step);
                if (same == NULL) {
                    if (PyErr_Occurred() || !(same = PyList_New(0)))
                        goto fail;
                    int failed = PyDict_SetItem(by_step, step, same);
                    Py_DECREF(same);
                    if (failed < 0)
                        goto fail;
                }
                if (PyList_Append(same, fact) < 0)
                    goto fail;
            }
        }
        Py_CLEAR(fact);
        Py_CLEAR(event_id); Py_CLEAR(at); Py_CLEAR(received); Py_CLEAR(attrs);
        Py_CLEAR(step); Py_CLEAR(actor); Py_CLEAR(dept_name);
        Py_CLEAR(f_event_id); Py_CLEAR(f_doing); Py_CLEAR(f_at); Py_CLEAR(f_attrs);
        Py_CLEAR(f_received); Py_CLEAR(f_department);
    }
    Py_DECREF(sequence);
    Py_DECREF(base_ms);
    PyObject *out = PyTuple_Pack(6, facts, entries, stem, number, department, by_step);
    Py_DECREF(facts); Py_DECREF(entries); Py_DECREF(stem); Py_DECREF(number);
    Py_DECREF(department); Py_DECREF(by_step);
    return out;
fail:
    Py_XDECREF(fact);
    Py_XDECREF(event_id); Py_XDECREF(at); Py_XDECREF(received); Py_XDECREF(attrs);
    Py_XDECREF(step); Py_XDECREF(actor); Py_XDECREF(dept_name); Py_XDECREF(tmp);
    Py_XDECREF(f_event_id); Py_XDECREF(f_doing); Py_XDECREF(f_at); Py_XDECREF(f_attrs);
    Py_XDECREF(f_received); Py_XDECREF(f_department);
    Py_DECREF(sequence);
    Py_XDECREF(facts); Py_XDECREF(entries); Py_XDECREF(base_ms); Py_XDECREF(stem);
    Py_XDECREF(number); Py_XDECREF(department); Py_XDECREF(by_step);
    return NULL;
}

/* state_codec._applicant_id: an applicant id of lowercase hex digits as their bytes (an
 * Ext of the sha256 code when it begins "sha256:"), else the value itself */
static PyObject *
applicant_id_value(PyObject *value)
{
    if (!PyUnicode_CheckExact(value))
        return Py_NewRef(value);
    if (PyUnicode_READY(value) < 0)
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    Py_ssize_t prefix = PyUnicode_GET_LENGTH(sha256_prefix);
    int tail = PyUnicode_Tailmatch(value, sha256_prefix, 0, prefix, -1);
    if (tail < 0)
        return NULL;
    Py_ssize_t start = tail ? prefix : 0;
    Py_ssize_t digits = n - start;
    if (digits == 0 || digits % 2)
        return Py_NewRef(value);
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    PyObject *raw = PyBytes_FromStringAndSize(NULL, digits / 2);
    if (raw == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(raw);
    for (Py_ssize_t i = 0; i < digits; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, start + i);
        int nibble = c >= '0' && c <= '9' ? (int)(c - '0') : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : -1;
        if (nibble < 0) {  /* not lowercase hex: bytes.fromhex fails or writes it otherwise */
            Py_DECREF(raw);
            return Py_NewRef(value);
        }
        if (i % 2)
            out[i / 2] = (char)(out[i / 2] | nibble);
        else
            out[i / 2] = (char)(nibble << 4);
    }
    if (!tail)
        return raw;
    PyObject *ext = PyObject_CallFunctionObjArgs(ext_type, sha256_code, raw, NULL);
    Py_DECREF(raw);
    return ext;
}

/* a name's index in ``names`` (dict), listed at the end of ``listed`` when new */
static PyObject *
name_index(PyObject *names, PyObject *listed, PyObject *name)
{
    PyObject *index = PyDict_GetItemWithError(names, name);
    if (index != NULL)
        return Py_NewRef(index);
    if (PyErr_Occurred())
        return NULL;
    index = PyLong_FromSsize_t(PyDict_GET_SIZE(names));
    if (index == NULL)
        return NULL;
    if (PyDict_SetItem(names, name, index) < 0 || PyList_Append(listed, name) < 0) {
        Py_DECREF(index);
        return NULL;
    }
    return index;
}

#define FITS 4611686018427387904.0   /* 2**62: offsets beyond are written as the time */
#define FITS_MS 4503599627370496.0   /* 2**52 */

/* state_codec.write_entry_py for a fact whose time and receipt are floats: the fact's
 * record entry and the context after it; NotImplemented where it leaves the fact to the
 * Python function (another type of time or id, numbers past 64 bits) */
static PyObject *
write_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "write_entry(fact, base, names, listed, stem, number, department)");
        return NULL;
    }
    if (fact_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "jiancha.rules._native is not configured");
        return NULL;
    }
    PyObject *f = args[0], *base = args[1], *names = args[2], *listed = args[3];
    PyObject *stem = args[4], *number = args[5], *department = args[6];
    if (!PyDict_CheckExact(names) || !PyList_CheckExact(listed))
        Py_RETURN_NOTIMPLEMENTED;
    long long base_value;
    if (!small_int(base, &base_value) || llabs(base_value) > (1LL << 42))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *event_id = NULL, *f_at = NULL, *f_received = NULL, *f_attrs = NULL;
    PyObject *f_step = NULL, *f_actor = NULL, *f_department = NULL;
    PyObject *new_stem = NULL, *new_number = NULL, *written_id = NULL, *when = NULL;
    PyObject *later = NULL, *attrs = NULL, *actor = NULL, *dept = NULL, *doing = NULL;
    PyObject *entry = NULL, *out = NULL, *tmp = NULL;
    if (!(event_id = PyObject_GetAttr(f, s_event_id)) ||
        !(f_at = PyObject_GetAttr(f, s_at)) ||
        !(f_received = PyObject_GetAttr(f, s_received)))
        goto done;
    if (!PyUnicode_Check(event_id) || !PyFloat_CheckExact(f_received) ||
            !(PyFloat_CheckExact(f_at) || PyLong_CheckExact(f_at))) {
        out = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    /* the id: a difference to the previous numbered id of the same stem, or the number
     * after "<department>-", or the id itself */
    int found = numbered(event_id, &new_stem, &new_number);
    if (found < 0)
        goto done;
    if (found) {
        if (stem != Py_None) {
            int same = PyObject_RichCompareBool(new_stem, stem, Py_EQ);
            if (same < 0)
                goto done;
            written_id = same ? PyNumber_Subtract(new_number, number) : Py_NewRef(event_id);
        }
        else {
            if (!(f_department = PyObject_GetAttr(f, s_department)))
                goto done;
            if (!(tmp = PyObject_Format(f_department, s_empty)))
                goto done;
            PyObject *prefix = PyUnicode_Concat(tmp, s_dash);
            Py_CLEAR(tmp);
            if (prefix == NULL)
                goto done;
            int same = PyObject_RichCompareBool(new_stem, prefix, Py_EQ);
            Py_DECREF(prefix);
            if (same < 0)
                goto done;
            written_id = Py_NewRef(same ? new_number : event_id);
        }
        if (written_id == NULL)
            goto done;
        stem = new_stem;
        number = new_number;
    }
    else {
        written_id = Py_NewRef(event_id);
        stem = Py_None;
    }
    /* the time: whole seconds after the base, or the epoch seconds */
    double at;
    long long whole;
    if (PyFloat_CheckExact(f_at))
        at = PyFloat_AS_DOUBLE(f_at);
    else if (small_int(f_at, &whole))
        at = (double)whole;  /* float() of an int a double holds exactly */
    else {
        out = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    if (at != 0.0 && isfinite(at) && floor(at) == at) {
        if (fabs(at) >= 9.2e18) {  /* int(at) past 64 bits */
            out = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        long long offset = (long long)at - base_value;
        when = (offset > -(long long)FITS && offset < (long long)FITS)
            ? PyLong_FromLongLong(offset) : PyFloat_FromDouble(at);
    }
    else
        when = PyFloat_FromDouble(at);
    if (when == NULL)
        goto done;
    /* the receipt: left out when it is the time, else milliseconds after the base, or the
     * epoch seconds when it is no whole millisecond */
    double received = PyFloat_AS_DOUBLE(f_received);
    if (received != at) {
        later = NULL;
        if (received != 0.0 && fabs(received) < FITS_MS) {
            double product = received * 1000;
            double ms = round(product);
            if (fabs(product - ms) == 0.5)
                ms = 2.0 * round(product / 2.0);
            long long difference = (long long)ms - base_value * 1000;
            if (ms / 1000.0 == received && difference > -(long long)FITS &&
                    difference < (long long)FITS)
                later = PyLong_FromLongLong(difference);
            else
                later = PyFloat_FromDouble(received);
        }
        else
            later = PyFloat_FromDouble(received);
        if (later == NULL)
            goto done;
    }
    else
        later = Py_NewRef(Py_None);
    /* the attributes the contract defines by their code; an applicant id of hex digits
     * as bytes */
    if (!(f_attrs = PyObject_GetAttr(f, s_attrs)))
        goto done;
    int truth = PyObject_IsTrue(f_attrs);
    if (truth < 0)
        goto done;
    if (truth) {
        if (!PyDict_Check(f_attrs)) {
            out = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        if (!(attrs = PyDict_New()))
            goto done;
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(f_attrs, &pos, &key, &value)) {
            PyObject *code = PyDict_GetItemWithError(attribute_code_of, key);
            if (code == NULL && PyErr_Occurred())
                goto done;
            if (PyDict_SetItem(attrs, code != NULL ? code : key, value) < 0)
                goto done;
        }
        PyObject *applicant = PyDict_GetItemWithError(attrs, applicant_code);
        if (applicant != NULL) {
            PyObject *kept = applicant_id_value(applicant);
            int failed = kept == NULL || PyDict_SetItem(attrs, applicant_code, kept) < 0;
            Py_XDECREF(kept);
            if (failed)
                goto done;
        }
        else if (PyErr_Occurred())
            goto done;
    }
    else
        attrs = Py_NewRef(Py_None);
    /* who did which step */
    if (!(f_actor = PyObject_GetAttr(f, s_actor)) || !(actor = name_index(names, listed, f_actor)))
        goto done;
    if (f_department == NULL && !(f_department = PyObject_GetAttr(f, s_department)))
        goto done;
    if (!(dept = name_index(names, listed, f_department)))
        goto done;
    if (!(f_step = PyObject_GetAttr(f, s_step)))
        goto done;
    PyObject *code = PyDict_GetItemWithError(step_code_of, f_step);
    if (code == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, f_step);
        goto done;
    }
    if (!(tmp = PyNumber_Lshift(actor, i_step_bits)) || !(doing = PyNumber_Or(tmp, code)))
        goto done;
    Py_CLEAR(tmp);
    int changed = PyObject_RichCompareBool(dept, department, Py_NE);
    if (changed < 0)
        goto done;
    /* the department only when it changed, and no trailing nil */
    if (!(entry = entry_of(written_id, doing, when, attrs, later, changed ? dept : Py_None)))
        goto done;
    out = PyTuple_Pack(4, entry, stem, number, changed ? dept : department);
done:
    Py_XDECREF(event_id); Py_XDECREF(f_at); Py_XDECREF(f_received); Py_XDECREF(f_attrs);
    Py_XDECREF(f_step); Py_XDECREF(f_actor); Py_XDECREF(f_department);
    Py_XDECREF(new_stem); Py_XDECREF(new_number); Py_XDECREF(written_id); Py_XDECREF(when);
    Py_XDECREF(later); Py_XDECREF(attrs); Py_XDECREF(actor); Py_XDECREF(dept);
    Py_XDECREF(doing); Py_XDECREF(entry); Py_XDECREF(tmp);
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Fact, STEP_CODES, ATTRIBUTE_CODES, Ext, sha256_ext_code, sha256_prefix, "
     "entry_type, step_code_of, attribute_code_of)"},
    {"write_entry", (PyCFunction)(void (*)(void))write_entry, METH_FASTCALL,
     "write_entry(fact, base, names, listed, stem, number, department) -> (entry, stem, "
     "number, department), or NotImplemented for a fact of times it leaves to Python"},
    {"read_facts", (PyCFunction)(void (*)(void))read_facts, METH_FASTCALL,
     "read_facts(kept, names, base, written) -> (facts, entries, stem, number, department, "
     "by_step)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "jiancha.rules._native",
    "The parts of the rules compiled for speed (rules/_native.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (intern_all() < 0)
        return NULL;
    return PyModule_Create(&module);
}
