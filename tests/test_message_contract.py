"""A message that breaks its actor's contract is a data failure at once, named by the field that is
wrong and never by the value it carries (that reason is logged and kept in the dead letter)."""

import pytest
from crossledger.actors import _actor
from crossledger.actors.messages import Journey
from crossledger.plugins.errors import Category, ConnectorError
from dramatiq.brokers.stub import StubBroker


def test_a_message_that_breaks_its_contract_is_a_data_error_without_the_value() -> None:
    handled: list[Journey] = []
    actor = _actor(StubBroker(), Journey, handled.append)
    with pytest.raises(ConnectorError) as refused:
        actor.fn("run-1", {"status": "ada.lovelace@example.com"})
    assert refused.value.category is Category.DATA and handled == []
    assert "`$[1].status`" in str(refused.value)
    assert "ada.lovelace" not in str(refused.value)
