"""Registry: registration, look-up errors, build, argument checks (no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from registry import ConfigError, Registry, RegistryError, check_arguments


def make_registry(**kwargs) -> Registry:
    return Registry("backbone", slots=("backbone",), **kwargs)


class Base:
    pass


def test_register_get_names_contains_and_aliases():
    reg = make_registry()

    @reg.register(aliases=("resnet",))
    class ResNet:
        """A residual network.

        More text.
        """

        def __init__(self, depth=50):
            self.depth = depth

    assert reg.get("ResNet") is ResNet
    assert reg.get("resnet") is ResNet
    assert "ResNet" in reg and "resnet" in reg and "VGG" not in reg and 3 not in reg
    assert reg.names() == ["ResNet"]
    assert reg.entry("resnet").description == "A residual network."
    assert list(reg) == ["ResNet"] and len(reg) == 1


def test_register_with_explicit_name():
    reg = make_registry()

    @reg.register("tiny")
    class Something:
        pass

    assert reg.get("tiny") is Something
    assert "Something" not in reg


def test_duplicate_name_is_an_error_naming_both_classes():
    reg = make_registry()

    @reg.register()
    class ResNet:
        pass

    with pytest.raises(RegistryError, match=r"'ResNet' is already registered .*test_core.*ResNet"):

        @reg.register("ResNet")
        class Other:
            pass

    assert reg.get("ResNet") is ResNet


def test_alias_clashing_with_a_name_is_an_error():
    reg = make_registry()

    @reg.register()
    class A:
        pass

    with pytest.raises(RegistryError, match="'A' is already registered"):

        @reg.register("B", aliases=("A",))
        class B:
            pass

    assert "B" not in reg  # nothing half-registered


def test_unknown_name_suggests_close_matches_and_plugin_hint():
    reg = make_registry()

    @reg.register(aliases=("resnet",))
    class ResNet:
        pass

    @reg.register()
    class MobileNetV2:
        pass

    with pytest.raises(RegistryError) as info:
        reg.get("ResNett")
    message = str(info.value)
    assert "unknown backbone 'ResNett'" in message
    assert "registry 'backbone'" in message
    assert "Did you mean ResNet?" in message  # the canonical name, not the alias
    assert "imports:" in message and "entry-point" in message
    assert "MobileNetV2" in message  # lists what is registered


def test_close_matches_are_case_insensitive_and_deduplicated():
    reg = make_registry()

    @reg.register(aliases=("resnet", "RESNET50"))
    class ResNet:
        pass

    assert reg.close_matches("resnet_") == ["ResNet"]
    assert reg.close_matches("zzzz") == []


def test_base_class_is_enforced():
    reg = make_registry(base=Base)
    with pytest.raises(TypeError, match=r"must subclass .*Base to be registered as a backbone"):

        @reg.register()
        class NotABase:
            pass

    @reg.register()
    class Good(Base):
        pass

    assert reg.get("Good") is Good


def test_required_methods_are_enforced_and_string_bases_resolve_lazily():
    import json

    reg = make_registry(base="json:JSONDecoder", required=("decode",))
    with pytest.raises(TypeError, match=r"does not meet the backbone contract: it must implement decode\(\)"):

        @reg.register()
        class Lazy(json.JSONDecoder):
            pass

    with pytest.raises(TypeError, match=r"must subclass json\.decoder\.JSONDecoder"):

        @reg.register()
        class Stranger:
            def decode(self, s):
                return s

    @reg.register()
    class Keen(json.JSONDecoder):
        def decode(self, s, _w=None):
            return s

    assert reg.base is json.JSONDecoder and reg.get("Keen") is Keen


def test_on_register_hook_sees_class_and_name_and_may_replace_it():
    seen = []

    def hook(cls, name, registry):
        seen.append((cls.__name__, name, registry.name))
        return type(cls.__name__ + "Wrapped", (cls,), {})

    reg = make_registry(on_register=hook)

    @reg.register("x")
    class X:
        pass

    assert seen == [("X", "x", "backbone")]
    assert X.__name__ == "XWrapped" and reg.get("x") is X


def test_build_from_spec_defaults_and_precedence():
    reg = make_registry()

    @reg.register()
    class Head:
        def __init__(self, num_classes, width=256):
            self.num_classes = num_classes
            self.width = width

    head = reg.build({"type": "Head", "width": 128}, num_classes=5)
    assert (head.num_classes, head.width) == (5, 128)
    head = reg.build({"type": "Head", "num_classes": 3}, num_classes=5)
    assert head.num_classes == 3  # the spec wins over the caller's defaults
    assert reg.build("Head", num_classes=2).width == 256  # a bare name is a spec
    assert reg.build(head) is head  # already built


def test_build_errors_are_config_errors():
    reg = make_registry()

    @reg.register()
    class Head:
        def __init__(self, num_classes, width=256):
            if width <= 0:
                raise ValueError("width must be positive")

    with pytest.raises(ConfigError, match="needs a 'type' key"):
        reg.build({"width": 3})
    with pytest.raises(ConfigError, match="missing required argument 'num_classes'"):
        reg.build({"type": "Head"})
    with pytest.raises(ConfigError, match="unknown argument 'widht' \\(did you mean width\\?\\)"):
        reg.build({"type": "Head", "num_classes": 1, "widht": 3})
    with pytest.raises(ConfigError, match="backbone 'Head': width must be positive"):
        reg.build({"type": "Head", "num_classes": 1, "width": -1})
    with pytest.raises(ConfigError, match="must be given as"):
        reg.build(3.5)
    with pytest.raises(RegistryError, match="unknown backbone 'Nope'"):
        reg.build({"type": "Nope"})


def test_check_arguments_follows_kwargs_up_the_mro_and_allows_injected():
    reg = make_registry()

    class Parent:
        def __init__(self, name=None, trainable=True):
            pass

    @reg.register(injected=("num_classes",))
    class Child(Parent):
        def __init__(self, num_classes, depth=1, **kwargs):
            super().__init__(**kwargs)

    entry = reg.entry("Child")
    assert check_arguments(entry, {"depth": 2, "name": "x", "trainable": False}, injected_ok=True) == []
    assert [a for a, _ in check_arguments(entry, {"depth": 2}, injected_ok=False)] == ["num_classes"]
    problems = check_arguments(entry, {"num_classes": 1, "colour": 1}, injected_ok=False)
    assert [a for a, _ in problems] == ["colour"]
    assert "accepted: depth, name, num_classes, trainable" in problems[0][1]


def test_unregister_removes_aliases():
    reg = make_registry()

    @reg.register(aliases=("a",))
    class A:
        pass

    reg.unregister("a")
    assert "A" not in reg and "a" not in reg


@pytest.mark.parametrize(
    "modules", ["registry, registry.config, registry.core", "mrcnn_tf, mrcnn_tf.registries, mrcnn_tf.config"]
)
def test_imports_no_tensorflow(modules):
    code = f"import sys, {modules}; assert 'tensorflow' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
