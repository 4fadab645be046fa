"""The package itself: import behaviour, config keys, README truthfulness."""

import os
import re
import subprocess
import sys
import unittest

from detectron2.config import get_cfg

import frcnn_plugin
from tests.conftest import REPO


class TestPackage(unittest.TestCase):
    def test_import_without_detectron2_says_how_to_install(self):
        code = "import sys; sys.modules['detectron2'] = None; import frcnn_plugin"
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
        )
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("frcnn_plugin needs detectron2", proc.stderr)
        self.assertIn("tools/setup_env.sh", proc.stderr)

    def test_add_frcnn_config_is_idempotent_and_keeps_detectron2_defaults(self):
        base = get_cfg()
        cfg = frcnn_plugin.add_frcnn_config(get_cfg())
        again = frcnn_plugin.add_frcnn_config(cfg.clone())
        self.assertEqual(cfg, again)

        def flat(node, prefix=""):
            out = {}
            for k, v in node.items():
                if isinstance(v, dict):
                    out.update(flat(v, prefix + k + "."))
                else:
                    out[prefix + k] = v
            return out

        before, after = flat(base), flat(cfg)
        self.assertEqual({k: after[k] for k in before}, before)  # no default changed
        self.assertGreater(len(after) - len(before), 10)

    def test_every_plugin_key_has_a_comment(self):
        with open(os.path.join(REPO, "frcnn_plugin", "config.py")) as f:
            lines = f.read().splitlines()
        assignments = [
            i for i, l in enumerate(lines) if re.match(r"\s+_C\.[A-Z_.]+ = (?!CN\(\))", l)
        ]
        self.assertGreater(len(assignments), 10)
        for i in assignments:
            j = i - 1
            while lines[j].rstrip().endswith("= CN()"):  # a new node between comment and key
                j -= 1
            self.assertRegex(lines[j], r"^\s+#", "no comment above: " + lines[i].strip())


class TestReadme(unittest.TestCase):
    """The README and the docs/ pages its text moved to (tests/docs_text.py)."""

    @classmethod
    def setUpClass(cls):
        from tests.docs_text import docs_text

        cls.text = docs_text()
        with open(os.path.join(REPO, "README.md")) as f:
            cls.readme = f.read()

    def test_snippets_are_copied_from_configs(self):
        snippets = re.findall(r"<!-- snippet: (\S+) -->\n```yaml\n(.*?)```", self.text, re.S)
        self.assertGreaterEqual(len(snippets), 9)  # anchors (3) and the swap recipes (6)
        for path, snippet in snippets:
            with open(os.path.join(REPO, path)) as f:
                self.assertIn(snippet, f.read(), path)

    def test_named_files_exist(self):
        named = r"`((?:configs|tools|frcnn_plugin|benchmarks|tests)/[\w./-]+\.(?:yaml|py|sh))`"
        paths = set(re.findall(named, self.text))
        self.assertGreater(len(paths), 40)
        for path in paths:
            self.assertTrue(os.path.isfile(os.path.join(REPO, path)), path)

    def test_named_python_objects_exist(self):
        """Every `frcnn_plugin.x.y` (or `benchmarks.x`) the docs name imports or is an attribute
        of what imports."""
        import importlib

        names = set(re.findall(r"`((?:frcnn_plugin|benchmarks)(?:\.\w+)+)", self.text))
        self.assertGreater(len(names), 15)
        for name in sorted(names):
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                where = os.path.realpath(getattr(obj, "__file__", None) or REPO)
                self.assertTrue(where.startswith(os.path.realpath(REPO) + os.sep), (name, where))
                for attr in parts[i:]:
                    self.assertTrue(hasattr(obj, attr), name)
                    obj = getattr(obj, attr)
                break

    def test_two_commands_and_ci(self):
        # the README itself shows the two commands that do all set-up, and what CI runs
        block = re.search(r"```bash\n(.*?)```", self.readme, re.S).group(1)
        self.assertRegex(block, r"(?m)^make demo\b")
        self.assertRegex(block, r"(?m)^make test\b")
        self.assertIn("CI (`.ci/run`)", self.readme)
        with open(os.path.join(REPO, ".ci", "run")) as f:
            self.assertIn("make test", f.read())
        with open(os.path.join(REPO, "Makefile")) as f:
            makefile = f.read()
        self.assertRegex(makefile, r"(?m)^demo:")
        self.assertRegex(makefile, r"(?m)^test:")


class TestLoadConfig(unittest.TestCase):
    def test_bad_key_in_opts_names_source_and_close_key(self):
        from frcnn_plugin.config import load_frcnn_config
        from tests.conftest import CONFIGS

        path = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
        cfg = load_frcnn_config(path, ["MODEL.VGG.DEPTH", "11"])
        self.assertEqual(cfg.MODEL.VGG.DEPTH, 11)
        with self.assertRaisesRegex(ValueError, "from the command line: .*MODEL.ROI_HEADS.NMS_THRES"
                                    r".*Did you mean: MODEL.ROI_HEADS.NMS_THRESH_TEST"):
            load_frcnn_config(path, ["MODEL.ROI_HEADS.NMS_THRES_TEST", "0.3"])
        with self.assertRaisesRegex(ValueError, "from the command line"):
            load_frcnn_config(path, ["MODEL.VGG.DEPTH"])  # a key without its value


class TestBuiltinDataRoot(unittest.TestCase):
    """The shapes data sets' folder is resolved when they are used (current directory and
    DETECTRON2_DATASETS then), not when frcnn_plugin is imported."""

    def test_import_elsewhere_does_not_fix_the_folder(self):
        import tempfile

        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            code = (
                "import os, sys\n"
                "import frcnn_plugin\n"
                "from frcnn_plugin.data.shapes import builtin_shapes_root\n"
                "os.chdir(sys.argv[1])\n"
                "print(os.path.abspath(builtin_shapes_root()))\n"
                "os.environ['DETECTRON2_DATASETS'] = sys.argv[2]\n"
                "from frcnn_plugin.data import prepare_dataset\n"
                "from detectron2.data import MetadataCatalog\n"
                "json_file, _ = prepare_dataset('frcnn_shapes_val')  # 64 small images\n"
                "assert MetadataCatalog.get('frcnn_shapes_val').json_file == json_file\n"
                "print(os.path.dirname(json_file))\n"
            )
            env = dict(os.environ, PYTHONPATH=REPO)
            env.pop("DETECTRON2_DATASETS", None)
            proc = subprocess.run([sys.executable, "-c", code, b, os.path.join(b, "d")],
                                  capture_output=True, text=True, cwd=a, env=env, timeout=120)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            real_b = os.path.realpath(b)
            self.assertEqual(
                [os.path.realpath(p) for p in proc.stdout.split()],
                [os.path.join(real_b, "datasets", "frcnn_shapes"),
                 os.path.join(real_b, "d", "frcnn_shapes", "val")],
            )
            self.assertEqual(len(os.listdir(os.path.join(b, "d", "frcnn_shapes", "val",
                                                         "images"))), 64)
            self.assertEqual(os.listdir(a), [])  # nothing written where it was imported

    def test_relative_root_is_resolved_at_use(self):
        import tempfile

        from detectron2.data import DatasetCatalog, MetadataCatalog

        from frcnn_plugin.data import prepare_dataset, register_shapes_dataset

        old = os.getcwd()
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            try:
                os.chdir(a)
                register_shapes_dataset("frcnn_test_lazy_root", os.path.join("d", "x"), 2,
                                        image_size=32, seed=0, min_size=8, max_size=16)
                os.chdir(b)
                dicts = DatasetCatalog.get("frcnn_test_lazy_root")
                self.assertEqual(len(dicts), 2)
                expected = os.path.join(os.path.realpath(b), "d", "x")
                self.assertEqual(os.path.realpath(os.path.dirname(dicts[0]["file_name"])),
                                 os.path.join(expected, "images"))
                meta = MetadataCatalog.get("frcnn_test_lazy_root")
                self.assertEqual(os.path.realpath(meta.json_file),
                                 os.path.join(expected, "annotations.json"))
                self.assertEqual(os.listdir(a), [])
                # used from a third folder: generated there, metadata follows
                os.chdir(a)
                json_file, image_root = prepare_dataset("frcnn_test_lazy_root")
                self.assertEqual(os.path.realpath(json_file),
                                 os.path.join(os.path.realpath(a), "d", "x", "annotations.json"))
                self.assertEqual(MetadataCatalog.get("frcnn_test_lazy_root").json_file, json_file)
                self.assertEqual(MetadataCatalog.get("frcnn_test_lazy_root").evaluator_type,
                                 "coco")
            finally:
                os.chdir(old)
                DatasetCatalog.remove("frcnn_test_lazy_root")
                MetadataCatalog.remove("frcnn_test_lazy_root")


class TestDeclaredRequirements(unittest.TestCase):
    """setup.py's lower bounds: a torch / torchvision pair that exists, satisfied by what
    tools/setup_env.sh installs, new enough for the APIs the code uses; python_requires true of
    the code's syntax."""

    @classmethod
    def setUpClass(cls):
        import ast

        with open(os.path.join(REPO, "setup.py")) as f:
            tree = ast.parse(f.read())
        call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                    and getattr(n.func, "id", "") == "setup")
        kwargs = {k.arg: k.value for k in call.keywords}
        cls.requires = {re.split(r"[<>=!~ ]", r, 1)[0]: r
                        for r in ast.literal_eval(kwargs["install_requires"])}
        cls.python_requires = ast.literal_eval(kwargs["python_requires"])
        with open(os.path.join(REPO, "tools", "setup_env.sh")) as f:
            setup_env = f.read()
        cls.pins = {name: re.search(r'^{}_SPEC="{}==([0-9.]+)'.format(var, name), setup_env,
                                    re.M).group(1)
                    for var, name in (("TORCH", "torch"), ("TORCHVISION", "torchvision"))}

    def minimum(self, name):
        from packaging.version import Version

        m = re.fullmatch(r"{}>=([0-9.]+)".format(name), self.requires[name])
        self.assertIsNotNone(m, self.requires[name])
        return Version(m.group(1))

    def test_torch_and_torchvision_minimums(self):
        from packaging.version import Version

        torch_min, tv_min = self.minimum("torch"), self.minimum("torchvision")
        # torch.optim.Optimizer.register_step_pre_hook and `with torch.device(...)` came in 2.0
        self.assertGreaterEqual(torch_min, Version("2.0"))
        # torchvision 0.(15 + k) is the release of torch 2.k (0.15 <-> 2.0, ..., 0.28 <-> 2.13)
        for torch_v, tv_v in ((torch_min, tv_min),
                              (Version(self.pins["torch"]), Version(self.pins["torchvision"]))):
            self.assertEqual(torch_v.major, 2)
            self.assertEqual((tv_v.major, tv_v.minor), (0, 15 + torch_v.minor), (torch_v, tv_v))

    def test_setup_env_installs_what_setup_py_allows(self):
        from packaging.specifiers import SpecifierSet

        for name, pinned in self.pins.items():
            spec = SpecifierSet(self.requires[name][len(name):])
            self.assertIn(pinned, spec, (name, pinned, self.requires[name]))

    def test_python_requires_is_true_of_the_code(self):
        import ast

        m = re.fullmatch(r">=3\.(\d+)", self.python_requires)
        self.assertIsNotNone(m, self.python_requires)
        oldest = (3, int(m.group(1)))
        self.assertLessEqual(oldest, (3, 8))  # torch 2.0's oldest Python
        files = [os.path.join(d, f) for top in ("frcnn_plugin", "tools", "tests")
                 for d, _, fs in os.walk(os.path.join(REPO, top)) for f in fs
                 if f.endswith(".py")]
        self.assertGreater(len(files), 30)
        builtin_generics = {"list", "dict", "tuple", "set", "frozenset", "type"}
        for path in files + [os.path.join(REPO, "setup.py")]:
            with open(path) as f:
                tree = ast.parse(f.read(), path, feature_version=oldest)  # no newer syntax
            # builtin generics in annotations (list[int]) fail at import time before 3.9
            annotations = [a for node in ast.walk(tree) for a in (
                [node.annotation] if isinstance(node, (ast.arg, ast.AnnAssign)) else
                [node.returns] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                else []) if a is not None]
            bad = [ast.dump(n) for a in annotations for n in ast.walk(a)
                   if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
                   and n.value.id in builtin_generics]
            self.assertEqual(bad, [], path)
