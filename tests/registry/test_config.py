"""Config loading: _base_ merging, _delete_, overrides, validation, strict YAML, dumping."""

from __future__ import annotations

import math

import pytest
import yaml

from registry import ConfigError, PluginError, Registry, dump_config, load_config, merge, parse_override
from registry.config import apply_override, parse_yaml


@pytest.fixture
def registries():
    backbones = Registry("backbone", slots=("backbone",))
    heads = Registry("mask_head", slots=("mask_head",))
    losses = Registry("loss", slots=("loss", "*_loss"))

    @backbones.register(aliases=("resnet",))
    class ResNet:
        def __init__(self, depth=50, norm="frozen_bn", **kwargs):
            pass

    @heads.register(injected=("num_classes",))
    class MaskHead:
        def __init__(self, num_classes, num_convs=4):
            pass

    @losses.register()
    class BCE:
        def __init__(self, weight=1.0):
            pass

    return [backbones, heads, losses]


# ----------------------------------------------------------------------------- merging
def test_base_merge_order_child_wins_dicts_merge_lists_replace(write):
    write("base1.yaml", "model: {backbone: {type: ResNet, depth: 50}, sizes: [1, 2, 3]}\nx: 1\n")
    write("base2.yaml", "model: {backbone: {depth: 101, norm: gn}}\nx: 2\ny: 2\n")
    child = write(
        "child.yaml",
        """
        _base_: [base1.yaml, base2.yaml]
        model:
          sizes: [9]
          backbone: {norm: bn}
        y: 3
        """,
    )
    cfg = load_config(child)
    assert cfg == {
        "model": {"backbone": {"type": "ResNet", "depth": 101, "norm": "bn"}, "sizes": [9]},
        "x": 2,  # base2 after base1
        "y": 3,  # the child wins
    }


def test_base_as_single_string_and_relative_to_the_including_file(write):
    write("a/_base_/m.yaml", "k: {v: 1}\n")
    write("a/mid.yaml", "_base_: _base_/m.yaml\nk: {w: 2}\n")
    top = write("top.yaml", "_base_: a/mid.yaml\n")
    assert load_config(top) == {"k": {"v": 1, "w": 2}}


def test_delete_replaces_the_inherited_dict(write):
    write("base.yaml", "model: {backbone: {type: ResNet, depth: 50, norm: gn}, keep: 1}\n")
    child = write("child.yaml", "_base_: base.yaml\nmodel:\n  backbone: {_delete_: true, type: ResNet}\n")
    assert load_config(child) == {"model": {"backbone": {"type": "ResNet"}, "keep": 1}}


def test_delete_must_be_boolean(write):
    child = write("child.yaml", "model: {_delete_: yes please}\n")
    with pytest.raises(ConfigError, match="_delete_ must be true or false"):
        load_config(child)


def test_merge_does_not_modify_its_inputs():
    base = {"a": {"b": [1, 2]}, "c": 1}
    child = {"a": {"d": 2}}
    out = merge(base, child)
    assert out == {"a": {"b": [1, 2], "d": 2}, "c": 1}
    out["a"]["b"].append(3)
    assert base == {"a": {"b": [1, 2]}, "c": 1} and child == {"a": {"d": 2}}


def test_base_cycle_is_an_error_not_a_hang(write):
    write("a.yaml", "_base_: b.yaml\n")
    write("b.yaml", "_base_: c.yaml\n")
    c = write("c.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"_base_ cycle: .*c.yaml -> .*a.yaml -> .*b.yaml -> .*c.yaml"):
        load_config(c)


def test_self_including_base_is_a_cycle(write):
    a = write("a.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(a)


def test_missing_base_names_the_including_file(write, tmp_path):
    child = write("child.yaml", "_base_: [nope.yaml]\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert info.value.file == str(child) and info.value.key == "_base_"
    assert "base config 'nope.yaml' not found" in str(info.value)


def test_base_falls_back_to_base_roots_but_a_local_file_wins(write, tmp_path):
    root = tmp_path / "bundled"
    root.mkdir()
    (root / "zoo.yaml").write_text("a: 1\nb: 1\n", encoding="utf-8")
    child = write("project/child.yaml", "_base_: zoo\nb: 2\n")  # name without .yaml, from a root
    assert load_config(child, base_roots=[root]) == {"a": 1, "b": 2}
    write("project/zoo.yaml", "a: 5\n")  # next to the file: preferred over the root
    assert load_config(write("project/c2.yaml", "_base_: zoo.yaml\n"), base_roots=[root]) == {"a": 5}
    with pytest.raises(ConfigError, match=r"or under .*bundled"):
        load_config(write("project/c3.yaml", "_base_: nope.yaml\n"), base_roots=[root])


def test_missing_file_and_non_mapping_file(write, tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write("list.yaml", "- a\n- b\n"))
    assert load_config(write("empty.yaml", "")) == {}


# ----------------------------------------------------------------------------- YAML
def test_python_object_tag_is_rejected(write):
    bad = write("bad.yaml", "model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="only plain YAML is accepted") as info:
        load_config(bad)
    assert info.value.file == str(bad) and "line 1" in str(info.value)


def test_invalid_yaml_names_file_and_line(write):
    bad = write("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: line \d+") as info:
        load_config(bad)
    assert info.value.file == str(bad)


def test_duplicate_keys_are_an_error(write):
    bad = write("dup.yaml", "model:\n  depth: 50\n  depth: 101\n")
    with pytest.raises(ConfigError, match="duplicate key 'depth' \\(first at line 2\\)"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-3", 1e-3),
        ("2E5", 2e5),
        ("-1.5e-2", -1.5e-2),
        ("1.0", 1.0),
        (".5", 0.5),
        ("10", 10),
        ("1_000", 1000),
    ],
)
def test_scientific_notation_is_a_float(text, expected):
    value = parse_yaml(f"v: {text}")["v"]
    assert value == expected and type(value) is type(expected)


def test_special_floats_and_strings_stay_what_yaml_says():
    data = parse_yaml("a: .inf\nb: -.inf\nc: .nan\nd: e5\ne: 1e\nf: '1e-3'\n")
    assert data["a"] == math.inf and data["b"] == -math.inf and math.isnan(data["c"])
    assert data["d"] == "e5" and data["e"] == "1e" and data["f"] == "1e-3"


# ----------------------------------------------------------------------------- overrides
@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("a.b.c=1", ["a", "b", "c"], 1),
        ("lr=0.02", ["lr"], 0.02),
        ("lr=1e-4", ["lr"], 1e-4),
        ("x=-3", ["x"], -3),
        ("x=[1, 2, 3]", ["x"], [1, 2, 3]),
        ("x=[a, b]", ["x"], ["a", "b"]),
        ("flag=true", ["flag"], True),
        ("flag=False", ["flag"], False),
        ("name=ResNet", ["name"], "ResNet"),
        ("name='123'", ["name"], "123"),
        ("name=a=b", ["name"], "a=b"),
        ("d={k: 1}", ["d"], {"k": 1}),
        ("v=null", ["v"], None),
        ("v=", ["v"], None),
        ("sizes.0=16", ["sizes", 0], 16),
        (" model.depth = 101", ["model", "depth"], 101),
    ],
)
def test_parse_override(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("novalue", "must look like key.path=VALUE"),
        ("=3", "malformed key"),
        ("a..b=3", "malformed key"),
        ("a b=3", "malformed key"),
        ("a.b=[1, 2", "invalid YAML"),
        ("a=!!python/object:os.system x", "only plain YAML"),
    ],
)
def test_bad_overrides_name_the_override(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_override(text)
    assert info.value.file == f"--set {text}"


def test_apply_override_creates_dicts_indexes_lists_and_refuses_scalars():
    cfg = {"model": {"sizes": [32, 64], "depth": 50}}
    apply_override(cfg, "model.sizes.1=128")
    apply_override(cfg, "train.lr=0.1")
    apply_override(cfg, "model.depth=101")
    assert cfg == {"model": {"sizes": [32, 128], "depth": 101}, "train": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="out of range"):
        apply_override(cfg, "model.sizes.5=1")
    with pytest.raises(ConfigError, match=r"'model\.depth' is 101, not a mapping"):
        apply_override(cfg, "model.depth.x=1")
    with pytest.raises(ConfigError, match=r"'train\.steps' is not a list"):
        apply_override(cfg, "train.steps.0=1")


def test_overrides_are_applied_after_merging(write):
    write("base.yaml", "model: {backbone: {type: ResNet, depth: 50}}\n")
    child = write("child.yaml", "_base_: base.yaml\nmodel: {backbone: {depth: 101}}\n")
    cfg = load_config(child, ["model.backbone.depth=152", "model.backbone.norm=gn"])
    assert cfg["model"]["backbone"] == {"type": "ResNet", "depth": 152, "norm": "gn"}


# -------------------------------------------------------------------------- validation
def test_unknown_type_names_file_key_path_and_suggestion(write, registries):
    write("base.yaml", "model:\n  backbone: {type: ResNett, depth: 50}\n")
    child = write("child.yaml", "_base_: base.yaml\nmodel: {neck: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(child, registries=registries)
    err = info.value
    assert err.file.endswith("base.yaml")  # where the bad value was written, not the child
    assert err.key == "model.backbone.type"
    assert "Did you mean ResNet?" in str(err) and "registry 'backbone'" in str(err)


def test_unknown_key_fails_at_load_time_with_close_match(write, registries):
    write("base.yaml", "model:\n  backbone: {type: ResNet}\n")
    child = write("child.yaml", "_base_: base.yaml\nmodel:\n  backbone: {detph: 101}\n")
    with pytest.raises(ConfigError) as info:
        load_config(child, registries=registries)
    assert info.value.file.endswith("child.yaml") and info.value.key == "model.backbone.detph"
    assert "did you mean depth?" in str(info.value)


def test_keyword_arguments_of_base_classes_are_accepted(write, registries):
    # ResNet ends in **kwargs with no further named parameters: only its own names count.
    cfg = write("c.yaml", "model:\n  backbone: {type: resnet, depth: 18, norm: gn}\n")
    assert load_config(cfg, registries=registries)["model"]["backbone"]["type"] == "resnet"


def test_missing_required_argument_fails_but_injected_ones_do_not(write, registries):
    good = write("good.yaml", "model:\n  mask_head: {type: MaskHead}\n")  # num_classes is injected
    assert load_config(good, registries=registries)
    losses = Registry("loss", slots=("*_loss",))

    @losses.register()
    class Needs:
        def __init__(self, weight):
            pass

    bad = write("bad.yaml", "model:\n  mask_loss: {type: Needs}\n")
    with pytest.raises(ConfigError, match="missing required argument 'weight'") as info:
        load_config(bad, registries=[losses])
    assert info.value.key == "model.mask_loss"


def test_wrong_role_is_rejected(write, registries):
    bad = write("bad.yaml", "model:\n  mask_head: {type: ResNet}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, registries=registries)
    assert info.value.key == "model.mask_head.type"
    assert "'ResNet' is a backbone, but 'mask_head' expects a mask_head" in str(info.value)


def test_slot_patterns_and_lists_of_specs(write, registries):
    cfg = write(
        "c.yaml",
        "model:\n  rpn_box_loss: {type: BCE, weight: 2.0}\n  extra: [{type: BCE}, {type: BCE, wieght: 1}]\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg, registries=registries)
    assert info.value.key == "model.extra[1].wieght"


def test_type_under_an_unclaimed_key_is_looked_up_everywhere(write, registries):
    ok = write("ok.yaml", "stuff: {type: MaskHead, num_convs: 2}\n")
    assert load_config(ok, registries=registries)
    bad = write("bad.yaml", "stuff: {type: MaskHaed}\n")
    with pytest.raises(ConfigError, match=r"not registered in any role\. Did you mean MaskHead\?"):
        load_config(bad, registries=registries)
    worse = write("worse.yaml", "stuff: {type: [1]}\n")
    with pytest.raises(ConfigError, match="'type' must be a registered name"):
        load_config(worse, registries=registries)


def test_override_errors_name_the_override(write, registries):
    cfg = write("c.yaml", "model:\n  backbone: {type: ResNet}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg, ["model.backbone.type=ResNett"], registries=registries)
    assert info.value.file == "--set model.backbone.type=ResNett"
    assert info.value.key == "model.backbone.type"


def test_unknown_top_level_key(write):
    cfg = write("c.yaml", "modle: {}\n")
    with pytest.raises(ConfigError, match=r"unknown top\-level key 'modle'; did you mean model\?"):
        load_config(cfg, top_level_keys=["model", "data"])


# ----------------------------------------------------------------------------- imports
def test_imports_are_imported_and_kept_and_concatenated(write, tmp_path, monkeypatch):
    calls = []
    write("base.yaml", "imports: [pkg.a]\n")
    cfg = write("c.yaml", "_base_: base.yaml\nimports: [pkg.b, pkg.a]\nx: 1\n")
    out = load_config(cfg, importer=lambda modules, source: calls.append((list(modules), source)))
    assert calls == [(["pkg.a", "pkg.b"], str(cfg))]
    assert out == {"imports": ["pkg.a", "pkg.b"], "x": 1}


def test_imports_that_fail_are_plugin_errors(write):
    cfg = write("c.yaml", "imports: [surely_not_a_module_xyz]\n")
    with pytest.raises(
        PluginError, match="imports\\[0\\]: cannot import plugin module 'surely_not_a_module_xyz'"
    ):
        load_config(cfg)
    with pytest.raises(ConfigError, match="imports must be a list of module names"):
        load_config(write("d.yaml", "imports: {a: 1}\n"))


# ----------------------------------------------------------------------------- dumping
def test_dump_reloads_to_the_same_dict(write, registries):
    write("base.yaml", "model:\n  backbone: {type: ResNet, depth: 50}\n  sizes: [32, 64]\n")
    child = write(
        "child.yaml",
        "_base_: base.yaml\nmodel:\n  lr: 1e-3\n  name: 'yes'\n  nested: [{a: 1}, [1, 2]]\n  none: null\n",
    )
    cfg = load_config(child, ["model.flag=true"], registries=registries)
    text = dump_config(cfg)
    again = write("again.yaml", text)
    assert load_config(again, registries=registries) == cfg
    assert yaml.safe_load(text) == cfg
    assert "sizes: [32, 64]" in text  # short lists stay on one line
