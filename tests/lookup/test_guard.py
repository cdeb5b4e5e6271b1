"""The near-miss guard on its own: near misses refused for a reason, paraphrases let through."""

import pytest

from proxy.lookup.guard import facts, refusal


@pytest.mark.parametrize("new,stored,reason", [
    ("turn on dark mode", "turn off dark mode", "opposite"),
    ("How do I enable notifications?", "How do I disable notifications?", "opposite"),
    ("I want to cancel my order", "I don't want to cancel my order", "negation"),
    ("Can I return shoes?", "Can I not return shoes?", "negation"),
    ("What is the capital of France?", "What is the capital of Germany?", "name"),
    ("what is the capital of france", "what is the capital of germany", "name"),
    ("Is shipping free over 50 dollars?", "Is shipping free over 100 dollars?", "number"),
    ("Give me five tips for sleep", "Give me ten tips for sleep", "number"),
    ("How many days are in a week?", "How many days are in a month?", "unit"),
    ("Convert 5 miles to km", "Convert 5 km to miles", "unit"),
    ("Flights from Paris to London", "Flights from London to Paris", "name_order"),
    ("Move money from savings to checking", "Move money from checking to savings", "direction"),
    ("What is the chemical symbol for gold?", "What is the chemical symbol for silver?", "name"),
    ("How do I make the text bigger?", "How do I make the text smaller?", "opposite"),
    ("How do I reset my iPhone 15?", "How do I reset my iPhone 14?", "number"),
    ("Who won the 2018 World Cup?", "Who won the 2022 World Cup?", "number"),
    ("What's the largest planet?", "What's the smallest planet?", "opposite"),
])
def test_near_misses_are_refused_with_their_reason(new: str, stored: str, reason: str) -> None:
    assert refusal(facts(new), facts(stored)) == reason
    assert refusal(facts(stored), facts(new)) is not None  # and the other way round


@pytest.mark.parametrize("new,stored", [
    ("How do I enable dark mode?", "How can I switch on dark mode?"),
    ("What is the capital of France?", "What's France's capital city?"),
    ("How do I reset my VPN?", "how do i reset my vpn"),
    ("Is a 5 day refund possible?", "Is a five day refund possible?"),
    ("Why isn't my order shipped?", "Why hasn't my order shipped yet?"),
    ("What are the rivers of Europe?", "Tell me about the rivers of Europe."),
    ("How do I set up Python on Windows?", "How do I install Python on Windows?"),
    ("When did World War II end?", "In what year did the Second World War end?"),
    ("How long should I boil an egg?", "How many minutes should I boil an egg for?"),
    ("How do I merge two PDF files?", "How can I combine two PDFs into one?"),
])
def test_paraphrases_pass(new: str, stored: str) -> None:
    assert refusal(facts(new), facts(stored)) is None
