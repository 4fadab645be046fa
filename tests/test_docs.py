"""The documentation's shape and links: a short README that leads to every docs/ page, pages
short enough to read in one sitting, and every relative link and picture resolving (files, and
for links into Markdown files the heading their #anchor names, by GitHub's slug rule)."""

import os
import re
import unittest

from tests.docs_text import REPO, doc_files, read, strip_fences

README = os.path.join(REPO, "README.md")
# [text](target) and ![alt](target); the target ends at the first space (a title may follow)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def slug(heading):
    """GitHub's anchor for a heading: the rendered text, lower case, without punctuation
    (letters, digits, ``_`` and ``-`` stay), spaces as ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    """The anchors of a Markdown file's headings (repeats get -1, -2, ... as on GitHub)."""
    seen, out = {}, set()
    for line in strip_fences(read(path)).splitlines():
        m = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else "{}-{}".format(base, n))
    return out


def links(path):
    """The link and picture targets of a Markdown file, outside code blocks and code spans."""
    text = re.sub(r"`[^`\n]*`", "", strip_fences(read(path)))
    return LINK.findall(text)


class TestDocs(unittest.TestCase):
    maxDiff = None

    def test_every_relative_link_and_picture_resolves(self):
        checked, broken = 0, []
        for path in doc_files():
            for target in links(path):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                    if file_part else path
                where = "{}: {}".format(os.path.relpath(path, REPO), target)
                checked += 1
                if not os.path.exists(dest):
                    broken.append(where + " (no such file)")
                elif not os.path.realpath(dest).startswith(REPO + os.sep):
                    broken.append(where + " (outside the repository)")
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    broken.append(where + " (no such heading)")
        self.assertGreater(checked, 50)
        self.assertEqual(broken, [])

    def test_readme_is_short_and_leads_to_every_page(self):
        text = read(README)
        self.assertLessEqual(len(text.splitlines()), 300)
        targets = {t.partition("#")[0] for t in links(README)}
        for path in doc_files():
            name = os.path.relpath(path, REPO).replace(os.sep, "/")
            if name.startswith("docs/"):
                self.assertIn(name, targets, "README does not link to " + name)

    def test_pages_read_in_one_sitting(self):
        for path in doc_files():
            if path != README:
                self.assertLess(len(read(path).splitlines()), 400, path)

    def test_slug_rule(self):
        self.assertEqual(slug("Training curves: `tools/plot_metrics.py`"),
                         "training-curves-toolsplot_metricspy")
        self.assertEqual(slug("How cost grows: input size, proposals, GT boxes"),
                         "how-cost-grows-input-size-proposals-gt-boxes")
        self.assertEqual(slug("Tricks: OHEM and Soft-NMS"), "tricks-ohem-and-soft-nms")
