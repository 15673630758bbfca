"""One registration per type: every registered schema class that names an implementation names one that exists."""

from __future__ import annotations

import inspect

import pytest

from ludwig_llm.schema import registry
from ludwig_llm.schema.rewards import reward_registry

# Registries whose types are implemented in code (the rest are plain config sections). A missing `implementation`
# on a new type fails here, not at run time.
IMPLEMENTED = {
    "adapter type": registry.adapter_registry,
    "distribution strategy": registry.strategy_registry,
    "retrieval type": registry.retrieval_registry,
    "backend type": registry.backend_registry,
    "trainer type": registry.trainer_registry,
    "reward type": reward_registry,
    "category decoder type": registry.category_decoder_registry,
}
ENTRIES = [pytest.param(kind, name, id=f"{kind}: {name}") for kind, reg in IMPLEMENTED.items() for name in reg.names()]


@pytest.mark.parametrize("kind, name", ENTRIES)
def test_every_registered_type_names_an_implementation_that_resolves(kind, name):
    if kind == "backend type" and name == "ray":
        pytest.importorskip("ray")
    schema = IMPLEMENTED[kind].get(name)
    assert isinstance(schema.implementation, str) and ":" in schema.implementation, schema
    implementation = registry.load_implementation(schema)
    assert inspect.isclass(implementation) or callable(implementation), schema.implementation


def test_a_bad_implementation_string_fails_loudly():
    class Broken:
        implementation = "ludwig_llm.results:no_such_thing"

    with pytest.raises(AttributeError):
        registry.load_implementation(Broken)
