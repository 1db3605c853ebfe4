"""Stories for benchmarks: plain English prose made from word lists, the same on every run.

Each story opens with a name of its own (no two of the first 26 stories share a first
letter, so none shares a first token with another), and the rest is drawn from a random
generator seeded with the story's number. Real stories tokenize at about 1.15 tokens a
word with SmolLM2's tokenizer, and these at about 1.17.
"""

import random
import re

NAMES = [
    "Ada", "Bram", "Cora", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonah", "Kira", "Leon", "Mara",
    "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Silas", "Tamsin", "Ugo", "Vera", "Wren", "Xavier", "Yusuf", "Zara",
]  # fmt: skip
PEOPLE = [
    "the old keeper", "her brother", "the baker", "the captain", "his mother", "the stranger", "the boy",
    "the fisherman's daughter", "the doctor", "the innkeeper", "the soldier", "the girl from the mill",
]  # fmt: skip
PLACES = [
    "the harbour", "the kitchen", "the forest", "the old road", "the market", "the lighthouse", "the garden",
    "the river", "the station", "the hill above the town", "the empty church", "the barn",
]  # fmt: skip
THINGS = [
    "letter", "lamp", "key", "coat", "boat", "map", "window", "door", "bell", "basket", "knife", "clock",
    "bread", "rope", "book", "candle", "box", "ring", "photograph", "bottle",
]  # fmt: skip
ADJECTIVES = [
    "old", "small", "cold", "heavy", "quiet", "broken", "bright", "wet", "dark", "warm", "narrow", "strange",
    "yellow", "grey", "familiar", "tired",
]  # fmt: skip
VERBS = [
    "opened", "found", "carried", "watched", "closed", "held", "dropped", "noticed", "picked up", "hid",
    "touched", "cleaned", "turned over", "put down",
]  # fmt: skip
MOTIONS = [
    "walked to", "ran toward", "came back from", "looked out over", "waited by", "climbed up to", "left",
    "hurried past", "stood in", "crossed",
]  # fmt: skip
WEATHER = [
    "The rain had not stopped since morning.", "A cold wind came off the sea.", "The light was going.",
    "Somewhere a dog was barking.", "The fire had burned low.", "It was very late.", "Snow was falling again.",
    "The clock on the wall said nearly midnight.", "Nobody else was awake.", "The street was empty.",
]  # fmt: skip
SAYINGS = [
    "We should go before it gets dark", "I told you it would be here", "Nobody has lived here for years",
    "Do you hear that", "Leave it where it is", "I know what this means", "It was not there yesterday",
    "You promised you would come back", "Keep your voice down", "Then we wait",
]  # fmt: skip
FEELINGS = ["afraid", "angry", "tired", "certain", "relieved", "curious", "alone", "sorry", "hopeful", "lost"]
TIMES = ["In the morning", "After a while", "Later that night", "Then", "At last", "Before dawn", "That evening"]


def _sentence(rng: random.Random, name: str, pronoun: str) -> str:
    """One sentence about the story's hero, `name`, who is also `pronoun`."""
    who = rng.choice([name, pronoun, pronoun, rng.choice(PEOPLE)])
    thing = f"the {rng.choice(ADJECTIVES)} {rng.choice(THINGS)}"
    place = rng.choice(PLACES)
    shapes = [
        f"{who} {rng.choice(VERBS)} {thing} and {rng.choice(MOTIONS)} {place} without looking back.",
        f"{rng.choice(TIMES)} {who} {rng.choice(MOTIONS)} {place} and thought about what had happened there.",
        f'"{rng.choice(SAYINGS)}," {who} said quietly.',
        f"{who} felt {rng.choice(FEELINGS)} when the door opened, but said nothing to anyone.",
        rng.choice(WEATHER),
        f"There was {thing} on the table, and beside it a {rng.choice(THINGS)} that nobody had seen before.",
        f"{who} remembered {place} as it had been when the family still lived in the house by the water.",
    ]
    sentence = rng.choice(shapes)
    start = 1 if sentence.startswith('"') else 0
    return sentence[:start] + sentence[start].upper() + sentence[start + 1 :]


def story_sentences(number: int, count: int) -> list[str]:
    """The first `count` sentences of story `number`; a paragraph ends with a sentence
    that ends in a newline."""
    rng = random.Random(f"story-{number}")
    name = NAMES[number % len(NAMES)]
    pronoun = rng.choice(["she", "he"])
    sentences = [f"{name} {rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} {rng.choice(THINGS)} at once."]
    until_break = rng.randint(3, 6)
    while len(sentences) < count:
        sentence = _sentence(rng, name, pronoun)
        until_break -= 1
        if until_break == 0:
            sentence += "\n\n"
            until_break = rng.randint(3, 6)
        sentences.append(sentence)
    return sentences


def join(sentences: list[str]) -> str:
    return "".join(s if s.endswith("\n") or i == len(sentences) - 1 else s + " " for i, s in enumerate(sentences))


def story_of_tokens(number: int, tokens: int, count_tokens) -> str:
    """The beginning of story `number`: as many words as `count_tokens(text)` finds room
    for in `tokens` (at least one word)."""
    # Sentences are 8 tokens or more with a real tokenizer, so these reach `tokens`; a
    # test's tiny tokenizer needs fewer still.
    words = re.findall(r"\S+\s*", join(story_sentences(number, tokens // 6 + 2)))
    low, high = 1, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens("".join(words[:middle]).rstrip()) <= tokens:
            low = middle
        else:
            high = middle - 1
    return "".join(words[:low]).rstrip()
