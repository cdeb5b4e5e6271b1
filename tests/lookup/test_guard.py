"""The near-miss guard on its own: near misses refused for a reason, paraphrases let through."""

import pytest

from proxy.lookup.guard import facts, refusal


@pytest.mark.parametrize("new,stored,reason", [
    ("turn on dark mode", "turn off dark mode", "alternative"),
    ("How do I enable notifications?", "How do I disable notifications?", "alternative"),
    ("I want to cancel my order", "I don't want to cancel my order", "negation"),
    ("Can I return shoes?", "Can I not return shoes?", "negation"),
    ("What is the capital of France?", "What is the capital of Germany?", "name"),
    ("what is the capital of france", "what is the capital of germany", "name"),
    ("Is shipping free over 50 dollars?", "Is shipping free over 100 dollars?", "number"),
    ("Give me five tips for sleep", "Give me ten tips for sleep", "number"),
    ("How many days are in a week?", "How many days are in a month?", "alternative"),
    ("Convert 5 miles to km", "Convert 5 km to miles", "unit"),
    ("Flights from Paris to London", "Flights from London to Paris", "order"),
    ("Move money from savings to checking", "Move money from checking to savings", "order"),
    ("What is the chemical symbol for gold?", "What is the chemical symbol for silver?", "name"),
    ("How do I make the text bigger?", "How do I make the text smaller?", "alternative"),
    ("How do I reset my iPhone 15?", "How do I reset my iPhone 14?", "number"),
    ("Who won the 2018 World Cup?", "Who won the 2022 World Cup?", "number"),
    ("What's the largest planet?", "What's the smallest planet?", "alternative"),
    ("How do I zoom in on the map?", "How do I zoom out on the map?", "alternative"),
    ("How do I delete all messages?", "How do I delete some messages?", "alternative"),
    ("Should I water succulents daily?", "Should I water succulents weekly?", "alternative"),
    ("How do I compress a file with gzip?", "How do I decompress a file with gzip?", "alternative"),
    ("Who discovered the Pythagorean theorem?", "What is the Pythagorean theorem?", "question"),
    ("How much vitamin C is in a lime?", "How much vitamin C is in a lemon?", "substitution"),
    ("How much is a train ticket to downtown?", "How much is a bus ticket to downtown?", "substitution"),
    ("How do I convert an integer to a string in Python?", "How do I convert a string to an integer in Python?",
     "order"),
    ("Can a child claim a parent as a dependent?", "Can a parent claim a child as a dependent?", "order"),
    ("How do I redirect HTTPS to HTTP?", "How do I redirect HTTP to HTTPS?", "order"),
    ("What is 10 to the power of 2?", "What is 2 to the power of 10?", "number"),
    ("How old is the Great Barrier Reef?", "What is the Great Barrier Reef?", "question"),
    ("Can my parents claim me as a dependent?", "Can I claim my parents as dependents?", "order"),
    ("Does it ever snow in London in winter?", "Does it usually snow in London in winter?", "alternative"),
    ("Does the plan also include phone support?", "Does the plan include only phone support?", "alternative"),
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
    ("How do I update my account's email address?", "How can I change the email address on my account?"),
    ("How do I parse JSON in JS?", "How do I parse JSON in JavaScript?"),
    ("Why was my order canceled?", "Why was my order cancelled?"),
    ("How do I get rid of fruit flies in my kitchen?", "How do I get rid of fruit flies?"),
    ("How come I'm not getting notification emails?", "Why am I not getting notification emails?"),
    ("What's your policy on returns?", "What is your return policy?"),
    ("How do I find files bigger than 1 GB?", "How do I find files larger than 1GB?"),
    ("How do I reverse a Python list?", "How do I reverse a list in Python?"),
    ("How many timezones are there in Russia?", "How many time zones does Russia have?"),
    ("What's the height of Mount Everest?", "How tall is Mount Everest?"),
    ("How much data have I used?", "How much data did I use?"),
])
def test_paraphrases_pass(new: str, stored: str) -> None:
    assert refusal(facts(new), facts(stored)) is None


def test_the_written_near_miss_sets_stay_caught_at_the_default_operating_point(local_models) -> None:
    """bench/data's held-out set (people-like paraphrases and near misses written to fool a cache) is a
    regression set: measured 97.6% precision at 43% hit rate at 0.92 with the shipped checks."""
    import sys
    from pathlib import Path

    from proxy.lookup import calibration
    from tests.lookup.conftest import MODEL_PATH

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from lookup import DATA, read_pairs

    pairs = read_pairs(DATA / "lookup_pairs_holdout.txt")
    texts = sorted({text for _, stored, new in pairs for text in (stored, new)})
    vectors = dict(zip(texts, local_models.load(MODEL_PATH).encode(texts, batch_size=64, normalize_embeddings=True)))
    model = calibration.load(calibration.SHIPPED)
    threshold = calibration.operating_point(model.curve, 0.10, "shipped").threshold
    hits = [kind for kind, stored, new in pairs if float(vectors[stored] @ vectors[new]) >= threshold
            and refusal(facts(new), facts(stored), model.checks) is None]
    paraphrases = sum(kind == "paraphrase" for kind, _, _ in pairs)
    assert hits.count("paraphrase") / len(hits) >= 0.95 and hits.count("paraphrase") / paraphrases >= 0.3
