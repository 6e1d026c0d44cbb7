"""Each component parameter is declared once (a `Param` in a torch-free schema module): the registry, the
class and its constructor cannot drift apart, and the constructor checks what it is given."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from empose_framework import hookimpl
from empose_framework.errors import EmposeError, PluginError
from empose_framework.interfaces import CONSTRUCTOR_KEYWORDS, KIND_CLASSES, BodyModel, Loss, MotionSource
from empose_framework.params import KINDS, ComponentRef, Param, matches
from empose_framework.plugins import Registry, get_registry

REPO = Path(__file__).resolve().parents[1]
REGISTERED = [(kind, e.name) for kind in KINDS for e in get_registry().entries(kind)]


@pytest.mark.parametrize("kind,name", REGISTERED)
def test_registered_schema_is_the_class_params(kind, name):
    entry = get_registry().get(kind, name)
    assert entry.params is not None, "built-ins register params= so that validate needs no import"
    cls = entry.load()
    assert cls.params is entry.params  # the very tuple of the schema module, not a copy
    assert cls.__module__.rsplit(".", 1)[0] + ".schema" in sys.modules
    assert all(p.doc for p in cls.params)


@pytest.mark.parametrize("kind,name", REGISTERED)
def test_constructor_takes_exactly_the_params_keyword_only_without_defaults(kind, name):
    cls = get_registry().load(kind, name)
    args = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert all(a.kind is inspect.Parameter.KEYWORD_ONLY for a in args)
    own = {a.name for a in args} - set(CONSTRUCTOR_KEYWORDS)
    assert own == {p.name for p in cls.params}
    assert all(a.default is inspect.Parameter.empty for a in args if a.name in own)


@pytest.mark.parametrize("kind,name", REGISTERED)
def test_every_default_is_accepted_by_its_own_param(kind, name):
    for p in get_registry().params(kind, name):
        if p.required or isinstance(p.type, ComponentRef):
            continue
        assert matches(p.default, p.type), p.name
        assert p.problem(p.default) is None, p.name


NEEDS_DATA = {("body_model", "smplh"), ("motion_source", "amass_lmdb"), ("motion_source", "bvh"),
              ("sensor_source", "empose_recordings"), ("sensor_source", "sensor_file")}  # fmt: skip


@pytest.fixture(scope="module")
def body():
    return get_registry().build("body_model", "embedded")


@pytest.mark.parametrize("kind,name", [k for k in REGISTERED if k not in NEEDS_DATA])
def test_defaults_construct(kind, name, body):
    registry = get_registry()
    keywords = {} if kind == "body_model" else {"body_model": body}
    spec = {"use": name}
    if kind == "sensor_source":  # virtual_em: the one required param is its motions
        spec["motions"] = {"use": "embedded", "count": 2, "seconds": 1.0}
    if kind == "estimator":
        keywords["sensor_names"] = ("back", "head", "r_forearm", "r_shank", "l_forearm", "l_shank")
    assert isinstance(registry.build(kind, spec, **keywords), KIND_CLASSES[kind])


# --------------------------------------------------------------------------- the mechanism on toy classes


class Toy(Loss):
    """A loss with one parameter of each sort."""

    params = (
        Param("form", str, "auto", "a choice", choices=("auto", "l1")),
        Param("scale", float, 1.0, "a number", min=0, max=10),
        Param("path", str, doc="required"),
    )

    def __init__(self, *, form, scale, path, body_model):
        self.form, self.scale, self.path, self.body_model = form, scale, path, body_model

    def __call__(self, prediction, batch):
        return 0.0


def test_missing_params_get_their_defaults_and_values_are_coerced():
    toy = Toy(path="p", scale=2, body_model="body")
    assert (toy.form, toy.scale, toy.path, toy.body_model) == ("auto", 2.0, "p", "body")
    assert type(toy.scale) is float


@pytest.mark.parametrize("given,message", [
    ({}, r"loss Toy: missing required parameter 'path'"),
    ({"path": 3}, r"loss Toy: parameter 'path': expected str, got 3 \(int\)"),
    ({"path": "p", "form": "l2"}, r"loss Toy: parameter 'form': expected one of 'auto', 'l1', got 'l2'"),
    ({"path": "p", "scale": 11.0}, r"loss Toy: parameter 'scale': expected 0 to 10, got 11.0"),
    ({"path": "p", "scale": float("nan")}, r"parameter 'scale': expected a finite number"),
    ({"path": "p", "scale": True}, r"parameter 'scale': expected float, got True"),
])  # fmt: skip
def test_bad_values_name_the_component_and_parameter(given, message):
    with pytest.raises(EmposeError, match=message):
        Toy(**given, body_model=None)


def test_a_keyword_that_is_neither_param_nor_constructor_keyword_is_refused():
    with pytest.raises(TypeError, match="sensor_names"):
        Toy(path="p", body_model=None, sensor_names=())


@pytest.mark.parametrize("init,words", [
    ("def __init__(self, *, a, body_model): pass", ["missing ['b']"]),
    ("def __init__(self, *, a, b, c, body_model): pass", ["undeclared ['c']"]),
    ("def __init__(self, *, a, b=2, body_model): pass", ["with a default of their own ['b']"]),
    ("def __init__(self, a, *, b, body_model): pass", ["['a'] positionally", "keyword-only"]),
    ("def __init__(self, *, body_model, **params): pass", ["['params']"]),
])  # fmt: skip
def test_drift_between_params_and_constructor_fails_at_class_creation(init, words):
    namespace = {}
    exec(init, namespace)  # noqa: S102 - a constructor spelled out by the test
    with pytest.raises(TypeError) as info:
        type("Drifted", (Loss,), {"params": (Param("a", int, 1, "a"), Param("b", int, 2, "b")),
                                  "__init__": namespace["__init__"], "__call__": lambda self, p, b: 0.0})
    for word in ["Drifted", *words]:
        assert word in str(info.value)


def test_inherited_constructor_is_held_to_the_subclass_params():
    with pytest.raises(TypeError, match="missing \\['extra'\\]"):
        class More(Toy):  # noqa: F841 - creating it is the test
            params = (*Toy.params, Param("extra", int, 0, "not taken by Toy.__init__"))


class Base(MotionSource):
    params = (Param("path", str, doc="where"), Param("count", int, 3, "how many", min=1))

    def __init__(self, *, path, count, body_model):
        self.path, self.count, self.calls = path, count, getattr(self, "calls", 0) + 1

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        raise IndexError(i)


class Fixed(Base):
    """Like CMUClips: fixes `path` itself and declares the rest."""

    params = (Param("count", int, 5, "how many", min=1), Param("tag", str, "x", "only the subclass has it"))

    def __init__(self, *, count, tag, body_model):
        self.tag = tag
        super().__init__(path="/fixed", count=count, body_model=body_model)


def test_super_init_is_not_checked_again_against_the_wrong_params():
    # Fixed's check fills its own defaults; Base's wrapper, reached through super(), neither asks for a
    # `path` nor rejects the Fixed-only `tag` (which it never sees), nor fills Base's count default
    fixed = Fixed(body_model=None)
    assert (fixed.path, fixed.count, fixed.tag, fixed.calls) == ("/fixed", 5, "x", 1)
    with pytest.raises(EmposeError, match="motion source Fixed: parameter 'count'"):
        Fixed(count=0, body_model=None)
    assert Base(path="p", body_model=None).count == 3


def test_component_params_take_built_components():
    class Holder(MotionSource):
        params = (Param("inner", ComponentRef("motion_source"), doc="a nested source"),)

        def __init__(self, *, inner, body_model):
            self.inner = inner

        def __len__(self):
            return 0

        def __getitem__(self, i):
            raise IndexError(i)

    inner = Base(path="p", body_model=None)
    assert Holder(inner=inner, body_model=None).inner is inner
    with pytest.raises(EmposeError, match="parameter 'inner': expected a built motion source, got 'embedded'"):
        Holder(inner="embedded", body_model=None)


def test_classes_that_declare_nothing_are_left_alone():
    class Plain(BodyModel):  # a test double / abstract base: no params, any constructor
        def __init__(self, sizes, n_betas=3):
            self.n_betas = n_betas

        forward = sensor_frames = to = lambda self, *a, **k: None

    assert Plain(None, n_betas=4).n_betas == 4


# --------------------------------------------------------------------------- the registry reads schemas without imports


WIDTH = (Param("width", int, 8, "a width", min=1),)


class _SchemaPlugin:
    @hookimpl
    def register_losses(self, register):
        register("ghost", "no_such_module_anywhere:Ghost", "never imported", params=WIDTH)
        register("liar", f"{__name__}:Toy", "registers other params than the class's", params=WIDTH)


def test_registry_params_need_no_import_and_a_wrong_registration_is_caught_on_load():
    registry = Registry(extra_plugins=[("ghostly", _SchemaPlugin())], entry_points=False)
    assert registry.params("loss", "ghost") == WIDTH
    with pytest.raises(PluginError, match="could not be imported"):
        registry.load("loss", "ghost")
    with pytest.raises(PluginError, match="params registered for it differ from Toy.params"):
        registry.load("loss", "liar")


def test_validate_reads_schemas_without_torch():
    code = ("import sys\nfrom empose_framework.cli import main\n"
            "try: main(['validate', 'recipes/quickstart.yaml'])\nexcept SystemExit as e: code = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "valid" in done.stderr and "estimator:" in done.stdout, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "NO_TORCH"

