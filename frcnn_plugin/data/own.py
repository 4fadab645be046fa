"""Your own data sets, declared in the config (``DATASETS.REGISTER``) or from plain Python.

Each entry names a data set and where its files are; it is registered with detectron2's own
``register_coco_instances`` or ``register_pascal_voc`` when the config is loaded
(:func:`frcnn_plugin.config.load_frcnn_config`), so ``DATASETS.TRAIN``/``TEST`` can name it::

    DATASETS:
      REGISTER:
        - {NAME: "pets_train", FORMAT: "coco", JSON_FILE: "pets/train.json",
           IMAGE_ROOT: "pets/images"}
        - {NAME: "pets_test", FORMAT: "voc", ROOT: "pets_voc", SPLIT: "test",
           CLASS_NAMES: ["cat", "dog"], YEAR: 2007}
      TRAIN: ("pets_train",)
      TEST: ("pets_test",)

The metadata's ``evaluator_type`` (``"coco"`` or ``"pascal_voc"``) picks the evaluator; for VOC,
``YEAR`` 2007 gives the 11-point AP of VOC2007, 2012 the area under the curve (detectron2's
``PascalVOCDetectionEvaluator``). Relative paths are taken from the current folder when the entry
is registered.

Nothing is read at registration. When the data set is loaded, missing files and folders are
errors naming the path and the config key (``DATASETS.REGISTER[i].JSON_FILE`` ...); boxes are
checked as for every data set (:mod:`frcnn_plugin.data.checks`).
"""
import difflib
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc

from ..errors import ConfigError, DataError, MissingFileError, UserError
from ..files import is_local

__all__ = ["FORMATS", "register_dataset", "register_datasets", "register_config_datasets"]

CONFIG_KEY = "DATASETS.REGISTER"
VOC_YEARS = (2007, 2012)
# FORMAT -> (required entry keys, optional entry keys with their defaults)
FORMATS = {
    "coco": (("NAME", "FORMAT", "JSON_FILE", "IMAGE_ROOT"), {}),
    "voc": (("NAME", "FORMAT", "ROOT", "SPLIT", "CLASS_NAMES"), {"YEAR": 2007}),
}
_PATH_KEYS = ("JSON_FILE", "IMAGE_ROOT", "ROOT")

# name -> the normalized entry it was registered with (by this module)
_REGISTERED = {}


def _normalize(entry, key):
    """The entry with upper-case keys, checked, defaults filled in, paths absolute."""
    if not isinstance(entry, dict):
        raise ConfigError("{}={!r} is invalid; allowed: a mapping with NAME, FORMAT and the "
                          "format's keys".format(key, entry))
    spec = {str(k).upper(): v for k, v in entry.items()}
    fmt = spec.get("FORMAT")
    if fmt not in FORMATS:
        raise ConfigError("{}.FORMAT={!r} is invalid; allowed: {}".format(
            key, fmt, " or ".join(repr(f) for f in FORMATS)))
    required, optional = FORMATS[fmt]
    allowed = set(required) | set(optional)
    for k in spec:
        if k not in allowed:
            close = difflib.get_close_matches(k, sorted(allowed), n=1, cutoff=0.6)
            raise ConfigError("{}.{} is not a key of a {!r} entry{}; allowed: {}".format(
                key, k, fmt, " (did you mean {}?)".format(close[0]) if close else "",
                ", ".join(required + tuple(optional))))
    missing = [k for k in required if spec.get(k) in (None, "", [], ())]
    if missing:
        raise ConfigError("{} (FORMAT {!r}) lacks {}; allowed: an entry with {}".format(
            key, fmt, ", ".join(missing), ", ".join(required)))
    spec = dict(optional, **spec)
    for k in _PATH_KEYS:
        if k in spec and is_local(spec[k]):
            spec[k] = os.path.abspath(os.path.expanduser(str(spec[k])))
    if fmt == "voc":
        _check_voc_values(spec, key)
    return spec


def _check_voc_values(spec, key):
    names = spec["CLASS_NAMES"]
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError("{}.CLASS_NAMES={!r} is invalid; allowed: a list of class names as in "
                          "the XML files' <name>".format(key, names))
    if len(set(names)) != len(names):
        raise ConfigError("{}.CLASS_NAMES={!r} repeats a name; allowed: distinct names".format(
            key, names))
    spec["CLASS_NAMES"] = list(names)
    if spec["YEAR"] not in VOC_YEARS or isinstance(spec["YEAR"], bool):
        raise ConfigError("{}.YEAR={!r} is invalid; allowed: 2007 (11-point AP, as VOC2007) or "
                          "2012 (area under the precision-recall curve)".format(key, spec["YEAR"]))


def register_dataset(entry, key="{}[0]".format(CONFIG_KEY)):
    """Register one data set with detectron2's ``register_coco_instances`` or
    ``register_pascal_voc``.

    Args:
        entry (dict): ``NAME``, ``FORMAT`` (``"coco"`` or ``"voc"``), and for ``"coco"``
            ``JSON_FILE`` and ``IMAGE_ROOT``; for ``"voc"`` ``ROOT`` (the folder with
            ``Annotations/``, ``ImageSets/Main/`` and ``JPEGImages/``), ``SPLIT`` (the
            ``ImageSets/Main/<SPLIT>.txt`` list), ``CLASS_NAMES`` and ``YEAR`` (2007, the
            default, or 2012). Keys are case-insensitive.
        key (str): how messages name the entry (its config key).

    Returns:
        str: the data set's name.

    Raises:
        ConfigError: a bad entry, or a name already registered with another entry (or by
            something else, e.g. a detectron2 built-in). The same entry again is a no-op.
    """
    spec = _normalize(entry, key)
    name = spec["NAME"]
    if name in _REGISTERED and _REGISTERED[name][0] == spec:
        return name
    if name in DatasetCatalog.list():
        previous = _REGISTERED.get(name)
        raise ConfigError(
            "{}.NAME={!r} is registered already ({}); allowed: a new name, or the same "
            "entry again".format(key, name, _difference(previous[0], spec) if previous
                                 else "by detectron2 or the plugin"))
    if spec["FORMAT"] == "coco":
        register_coco_instances(name, {}, spec["JSON_FILE"], spec["IMAGE_ROOT"])
    else:
        register_pascal_voc(name, spec["ROOT"], spec["SPLIT"], spec["YEAR"], spec["CLASS_NAMES"])
        MetadataCatalog.get(name).set(evaluator_type="pascal_voc")
    _checked_loader(name, spec, key)
    _REGISTERED[name] = (spec, key)
    return name


def _difference(old, new):
    """"by another entry: KEY=old here, new there" for the keys whose values differ."""
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "by another entry: " + ", ".join(
        "{}={!r} there, {!r} here".format(k, old.get(k), new.get(k)) for k in keys)


def register_datasets(entries, key=CONFIG_KEY):
    """:func:`register_dataset` for each entry of a list (``key[i]`` in messages); all are
    checked before any is registered. Returns their names."""
    if isinstance(entries, dict) or isinstance(entries, str):
        raise ConfigError("{}={!r} is invalid; allowed: a list of entries".format(key, entries))
    entries = list(entries)
    specs = [_normalize(e, "{}[{}]".format(key, i)) for i, e in enumerate(entries)]
    names = [s["NAME"] for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError("{} names {} more than once; allowed: one entry per name".format(
            key, ", ".join(map(repr, repeated))))
    return [register_dataset(e, "{}[{}]".format(key, i)) for i, e in enumerate(entries)]


def register_config_datasets(cfg):
    """Register the entries of ``cfg.DATASETS.REGISTER`` (if the config has the key)."""
    entries = cfg.DATASETS.get("REGISTER", [])
    return register_datasets(entries) if entries else []


def _checked_loader(name, spec, key):
    """Replace the registered loader by one that checks the entry's files first and names the
    config key of a missing one."""
    load = DatasetCatalog[name]  # detectron2's loader, as its register_* function made it
    check = _check_coco if spec["FORMAT"] == "coco" else _check_voc

    def checked():
        check(name, spec, key)
        try:
            dicts = load()
        except UserError:
            raise
        except (FileNotFoundError, ValueError, TypeError) as e:
            if spec["FORMAT"] != "voc":
                raise  # frcnn_plugin.data.checks explains COCO files that cannot be read
            raise _voc_error(name, spec, key, e) from e
        _check_images(name, dicts, key + (".IMAGE_ROOT" if spec["FORMAT"] == "coco" else
                                          ".ROOT"))
        return dicts

    DatasetCatalog.remove(name)
    DatasetCatalog.register(name, checked)


def _missing(path, what, name, key):
    return MissingFileError("Data set {!r}: {} not found: {} ({}); allowed: an existing "
                            "{}".format(name, what, path, key, what))


def _require(path, is_dir, what, name, key):
    if is_local(path) and not (os.path.isdir if is_dir else os.path.isfile)(path):
        raise _missing(path, what, name, key)


def _check_coco(name, spec, key):
    _require(spec["JSON_FILE"], False, "annotation file", name, key + ".JSON_FILE")
    _require(spec["IMAGE_ROOT"], True, "image folder", name, key + ".IMAGE_ROOT")


def _voc_split_file(spec):
    return os.path.join(spec["ROOT"], "ImageSets", "Main", spec["SPLIT"] + ".txt")


def _check_voc(name, spec, key):
    _require(spec["ROOT"], True, "VOC folder", name, key + ".ROOT")
    for sub in ("Annotations", "JPEGImages"):
        _require(os.path.join(spec["ROOT"], sub), True, sub + " folder", name, key + ".ROOT")
    _require(_voc_split_file(spec), False, "split file", name,
             "{}.SPLIT={!r} under {}.ROOT".format(key, spec["SPLIT"], key))


def _voc_error(name, spec, key, e):
    """A clear error for what detectron2's ``load_voc_instances`` raises."""
    if isinstance(e, FileNotFoundError):
        return _missing(e.filename or str(e), "annotation file (listed in {})".format(
            _voc_split_file(spec)), name, key + ".ROOT")
    if isinstance(e, TypeError) and "0-d array" in str(e):
        return DataError("Data set {!r}: {} lists a single image; detectron2's VOC loader needs "
                         "two or more ({}.SPLIT)".format(name, _voc_split_file(spec), key))
    if "is not in list" in str(e):
        return DataError("Data set {!r}: an object <name> in {} is not in {}.CLASS_NAMES={} "
                         "({}); allowed: the names of CLASS_NAMES".format(
                             name, os.path.join(spec["ROOT"], "Annotations"), key,
                             spec["CLASS_NAMES"], e))
    return DataError("Data set {!r}: cannot read the VOC annotations under {} ({}: {})".format(
        name, spec["ROOT"], type(e).__name__, e))


def _check_images(name, dicts, key):
    missing = [d["file_name"] for d in dicts
               if is_local(d.get("file_name")) and not os.path.isfile(d["file_name"])]
    if missing:
        raise MissingFileError(
            "Data set {!r}: {} of {} image files not found ({}), e.g. {}; allowed: every image "
            "the annotations name".format(name, len(missing), len(dicts), key,
                                          ", ".join(missing[:3])))
