"""`UsageMeter`: the provider's counts when it reports them, an estimate (marked) when not."""

from __future__ import annotations

from kaiwa.llm import ChatMessage, ModelRequest, ToolCall, Usage
from kaiwa.llm.text import estimate_tokens
from kaiwa.protocol import TokenUsage
from kaiwa.runtime.usage import UsageMeter, estimate_usage

REQUEST = ModelRequest(messages=[ChatMessage("user", "営業時間は?")], system="Be brief.")


def test_reported_usage_is_counted_as_is() -> None:
    meter = UsageMeter()
    meter.add_call(Usage(prompt_tokens=10, completion_tokens=3), request=REQUEST, text="ignored")
    assert meter.total() == TokenUsage(
        total_prompt_tokens=10, total_completion_tokens=3, total_tokens=13, total_calls=1
    )
    assert "estimated" not in meter.total().model_dump()


def test_a_call_without_a_report_is_estimated_from_what_it_streamed() -> None:
    meter = UsageMeter()
    meter.add_call(None, request=REQUEST, text="9時から18時です。")
    total = meter.total()
    assert total.estimated is True
    assert total.total_prompt_tokens == estimate_tokens("Be brief.") + estimate_tokens(
        "営業時間は?"
    )
    assert total.total_completion_tokens == estimate_tokens("9時から18時です。") == 9
    assert total.model_dump()["estimated"] is True


def test_tool_calls_count_in_the_estimate() -> None:
    call = ToolCall(id="c1", name="lookup", arguments={"query": "営業時間"})
    assert estimate_usage(REQUEST, "", [call]).completion_tokens > estimate_tokens("lookup")


def test_the_flag_survives_merging_and_adding() -> None:
    cut = UsageMeter()
    cut.add_call(None, request=REQUEST, text="途中")
    whole = UsageMeter()
    whole.add_call(Usage(1, 1), request=REQUEST, text="x")
    whole.merge(cut)
    assert whole.total().estimated is True
    nested = UsageMeter()
    nested.merge_usage(cut.total())
    assert nested.total().estimated is True
    assert (TokenUsage() + cut.total()).estimated is True
    assert (TokenUsage() + TokenUsage()).estimated is False
