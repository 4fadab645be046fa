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
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(REPO, "README.md")) as f:
            cls.text = f.read()

    def test_snippets_are_copied_from_configs(self):
        snippets = re.findall(r"<!-- snippet: (\S+) -->\n```yaml\n(.*?)```", self.text, re.S)
        self.assertGreaterEqual(len(snippets), 3)
        for path, snippet in snippets:
            with open(os.path.join(REPO, path)) as f:
                self.assertIn(snippet, f.read(), path)

    def test_named_files_exist(self):
        for path in set(re.findall(r"`((?:configs|tools)/[\w./-]+\.(?:yaml|py|sh))`", self.text)):
            self.assertTrue(os.path.isfile(os.path.join(REPO, path)), path)

    def test_two_commands_and_ci(self):
        self.assertIn("make demo", self.text)
        self.assertIn("make test", self.text)
        with open(os.path.join(REPO, ".ci", "run")) as f:
            self.assertIn("make test", f.read())


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
