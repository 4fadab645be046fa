"""The samplers (frcnn_plugin.modeling.sampling): invariants, determinism, registry, validation."""
import unittest

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detectron2.config import CfgNode as CN

from frcnn_plugin.modeling.sampling import (
    FRCNN_SAMPLER_REGISTRY,
    BalancedRandomSampler,
    build_sampler,
    rpn_sampler_names,
)

SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def labelled(draw):
    """(labels, bg_label): RPN-style labels in {-1, 0, 1} (bg 0) or ROI-style labels in
    {-1, 0 ... C} with background C."""
    num_classes = draw(st.integers(1, 5))
    rpn = draw(st.booleans())
    top = 1 if rpn else num_classes
    values = draw(st.lists(st.integers(-1, top), max_size=400))
    return torch.tensor(values, dtype=torch.int64), 0 if rpn else num_classes


def expected_counts(labels, bg_label, batch, fraction):
    num_pos = int(((labels != -1) & (labels != bg_label)).sum())
    num_neg = int((labels == bg_label).sum())
    pos = min(num_pos, int(batch * fraction))
    return pos, min(num_neg, batch - pos)


class TestBalancedRandomSamplerProperties(unittest.TestCase):
    @SETTINGS
    @given(
        labelled(),
        st.integers(1, 512),
        st.floats(0.0, 1.0, exclude_min=True),
        st.one_of(st.none(), st.integers(0, 2**31)),
    )
    def test_counts_fraction_and_label_sets(self, data, batch, fraction, seed):
        labels, bg = data
        sampler = BalancedRandomSampler(
            batch_size_per_image=batch, positive_fraction=fraction, bg_label=bg, seed=seed
        )
        pos, neg = sampler(labels)
        exp_pos, exp_neg = expected_counts(labels, bg, batch, fraction)
        self.assertEqual((len(pos), len(neg)), (exp_pos, exp_neg))
        self.assertLessEqual(len(pos), batch * fraction)
        self.assertLessEqual(len(pos) + len(neg), batch)
        self.assertEqual(pos.dtype, torch.int64)
        both = torch.cat([pos, neg]).tolist()
        self.assertEqual(len(set(both)), len(both))  # unique and disjoint
        self.assertTrue(bool(((labels[pos] != -1) & (labels[pos] != bg)).all()))
        self.assertTrue(bool((labels[neg] == bg).all()))

    @SETTINGS
    @given(labelled(), st.integers(1, 300), st.floats(0.05, 1.0), st.integers(0, 2**31))
    def test_seed_makes_it_deterministic_and_leaves_global_rng_alone(
        self, data, batch, fraction, seed
    ):
        labels, bg = data
        kwargs = dict(batch_size_per_image=batch, positive_fraction=fraction, bg_label=bg)
        a = BalancedRandomSampler(seed=seed, **kwargs)
        b = BalancedRandomSampler(seed=seed, **kwargs)
        state = torch.get_rng_state()
        for _ in range(2):  # the same sequence of samples, call after call
            for x, y in zip(a(labels), b(labels)):
                self.assertTrue(torch.equal(x, y))
        self.assertTrue(torch.equal(state, torch.get_rng_state()))



def rpn_labels(num_pos, num_neg, num_ignore, seed=0):
    """A shuffled RPN label vector with exactly these numbers of 1, 0 and -1."""
    labels = torch.tensor([1] * num_pos + [0] * num_neg + [-1] * num_ignore, dtype=torch.int64)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


class TestBalancedRandomSamplerContract(unittest.TestCase):
    """The sampler's contract on the global RNG (no seed, as detectron2's RPN uses it), against
    counts worked out by hand: at most 256 * 0.5 = 128 positives, negatives fill in to 256."""

    # (positives, negatives, ignored) -> (sampled positives, sampled negatives)
    CASES = {
        (300, 1000, 50): (128, 128),  # both plentiful
        (21, 1000, 50): (21, 235),  # few positives: negatives fill in
        (128, 128, 0): (128, 128),  # exactly the batch: all taken
        (129, 127, 10): (128, 127),  # one positive too many, one negative short
        (128, 0, 5): (128, 0),  # no negative: the batch stays short
        (0, 300, 5): (0, 256),  # no positive: all negatives
        (0, 100, 0): (0, 100),  # fewer than the batch in all
        (500, 3, 0): (128, 3),  # positives never exceed the fraction, even if the batch is short
        (0, 0, 40): (0, 0),  # all ignored
        (0, 0, 0): (0, 0),  # empty
    }

    def test_counts_disjoint_and_from_the_right_labels(self):
        sampler = BalancedRandomSampler(batch_size_per_image=256, positive_fraction=0.5)
        for (p, n, i), (want_pos, want_neg) in self.CASES.items():
            labels = rpn_labels(p, n, i)
            pos, neg = sampler(labels)
            self.assertEqual((len(pos), len(neg)), (want_pos, want_neg), (p, n, i))
            self.assertEqual((pos.dtype, neg.dtype), (torch.int64, torch.int64))
            both = torch.cat([pos, neg]).tolist()
            self.assertEqual(len(set(both)), len(both))  # no repeat, disjoint
            self.assertTrue(bool((labels[pos] == 1).all()))
            self.assertTrue(bool((labels[neg] == 0).all()))

    def test_fraction_rounds_down_and_roi_labels(self):
        # 10 * 0.33 = 3.3 -> 3 foreground; background label C = 4, foreground 0 ... 3
        sampler = BalancedRandomSampler(batch_size_per_image=10, positive_fraction=0.33,
                                        bg_label=4)
        labels = torch.tensor([0, 1, 2, 3] * 5 + [4] * 30 + [-1] * 7)
        pos, neg = sampler(labels)
        self.assertEqual((len(pos), len(neg)), (3, 7))
        self.assertTrue(bool(((labels[pos] >= 0) & (labels[pos] <= 3)).all()))
        self.assertTrue(bool((labels[neg] == 4).all()))

    def test_draws_from_the_global_rng_uniformly(self):
        sampler = BalancedRandomSampler(batch_size_per_image=4, positive_fraction=0.5)
        labels = torch.tensor([1] * 6 + [0] * 6)
        torch.manual_seed(123)
        first = [x.tolist() for x in sampler(labels)]
        torch.manual_seed(123)
        self.assertEqual([x.tolist() for x in sampler(labels)], first)  # global RNG decides
        # 2 of 6 positives and 2 of 6 negatives per draw: each one picked 1/3 of the time;
        # 600 draws give 200 each, binomial sd ~ 11.5: [140, 260] is > 5 sd either side
        counts = torch.zeros(12)
        for _ in range(600):
            pos, neg = sampler(labels)
            counts[torch.cat([pos, neg])] += 1
        self.assertTrue(bool(((counts >= 140) & (counts <= 260)).all()), counts.tolist())


class TestBalancedRandomSamplerExamples(unittest.TestCase):
    def test_rpn_256_half_positive_negatives_fill_in(self):
        sampler = BalancedRandomSampler(batch_size_per_image=256, positive_fraction=0.5, seed=0)
        many = torch.tensor([1] * 300 + [0] * 1000 + [-1] * 50)
        pos, neg = sampler(many)
        self.assertEqual((len(pos), len(neg)), (128, 128))
        few = torch.tensor([1] * 21 + [0] * 1000 + [-1] * 50)
        pos, neg = sampler(few)
        self.assertEqual((len(pos), len(neg)), (21, 235))

    def test_roi_128_quarter_foreground_with_background_label_num_classes(self):
        sampler = BalancedRandomSampler(
            batch_size_per_image=128, positive_fraction=0.25, bg_label=3, seed=0
        )
        labels = torch.tensor([0, 1, 2] * 20 + [3] * 500 + [-1] * 10)
        pos, neg = sampler(labels)
        self.assertEqual((len(pos), len(neg)), (32, 96))
        self.assertTrue(bool((labels[pos] < 3).all() and (labels[pos] >= 0).all()))


class TestBuildAndValidate(unittest.TestCase):
    def test_registry_and_build_from_config_node_or_kwargs(self):
        self.assertIs(FRCNN_SAMPLER_REGISTRY.get("BalancedRandomSampler"), BalancedRandomSampler)
        node = CN({"NAME": "BalancedRandomSampler", "SEED": 7})
        s = build_sampler(node, batch_size_per_image=128, positive_fraction=0.25, bg_label=80)
        self.assertEqual((s.batch_size_per_image, s.positive_fraction, s.bg_label, s.seed),
                         (128, 0.25, 80, 7))
        s = build_sampler(name="BalancedRandomSampler", batch_size_per_image=256,
                          positive_fraction=0.5)
        self.assertIsNone(s.seed)
        s = build_sampler({"seed": -1}, batch_size_per_image=256, positive_fraction=0.5)
        self.assertIsNone(s.generator)  # negative seed: the global RNG, as detectron2

    def test_rpn_sampler_names_leave_out_the_samplers_that_need_losses(self):
        names = rpn_sampler_names()
        self.assertIn("BalancedRandomSampler", names)
        self.assertNotIn("OHEMSampler", names)
        self.assertEqual(names, sorted(names))

    def test_errors_name_the_config_key_value_and_what_is_allowed(self):
        key = "MODEL.RPN."
        cases = [
            (dict(batch_size_per_image=0, positive_fraction=0.5), key + "BATCH_SIZE_PER_IMAGE=0"),
            (dict(batch_size_per_image=256, positive_fraction=0.0), key + "POSITIVE_FRACTION=0.0"),
            (dict(batch_size_per_image=256, positive_fraction=1.5), key + "POSITIVE_FRACTION=1.5"),
            (dict(name="Nope", batch_size_per_image=256, positive_fraction=0.5),
             "MODEL.RPN.SAMPLER.NAME='Nope'"),
        ]
        for kwargs, message in cases:
            with self.assertRaises(ValueError) as ctx:
                build_sampler(config_prefix="MODEL.RPN", **kwargs)
            self.assertIn(message, str(ctx.exception))
            self.assertIn("allowed", str(ctx.exception))
        build_sampler(batch_size_per_image=1, positive_fraction=1.0)  # the bounds are allowed


if __name__ == "__main__":
    unittest.main()
