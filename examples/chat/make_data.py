"""Writes the chat example's data: multi-turn conversations whose final answer needs facts from the first turn.

The user gives their name and a booking code in the first turn, chats about something else, then asks
for both back in a fixed format. The same conversations are written in two forms:

* OpenAI: `train.jsonl` / `test.jsonl`, column `messages` with {role, content} turns;
* ShareGPT: `train_sharegpt.jsonl` / `test_sharegpt.jsonl`, column `conversations` with {from, value} turns.

Each conversation ends with the assistant's answer, which is the reference in evaluation (prediction
generates that turn from the turns before it). Run: python examples/chat/make_data.py
"""

from __future__ import annotations

import json
import os
import random

FIRST = ["Ada", "Bruno", "Chen", "Dana", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lena",
         "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yara", "Zoe"]
CITIES = ["Paris", "Lagos", "Lima", "Oslo", "Kyoto", "Cairo", "Porto", "Quito", "Turin", "Dhaka"]
OPENERS = [
    "Hi, I'm {name} and my booking code is {code}.",
    "Hello! My name is {name}. I have a reservation, code {code}.",
    "Good morning, this is {name}. Booking reference: {code}.",
    "Hey there, {name} here. My code is {code}.",
]
GREETINGS = [
    "Nice to meet you, {name}. How can I help you today?",
    "Thanks, {name}! What can I do for you?",
    "Hello {name}, I have noted that. What would you like to know?",
]
SMALL_TALK = [
    ("What is the weather usually like in {city} in spring?", "Spring in {city} is usually mild, with some rain."),
    ("Can you recommend something to do in {city}?", "A walk through the old town of {city} is a good start."),
    ("Is it easy to get around {city} by public transport?", "Yes, {city} has buses and trains that are easy to use."),
    ("What should I pack for a trip to {city}?", "Comfortable shoes and a light jacket are enough for {city}."),
]
QUESTIONS = [
    "Please confirm my details in the format name=<name>; code=<code>.",
    "Before I go, repeat my details as name=<name>; code=<code>.",
    "Can you give me my details back as name=<name>; code=<code>?",
]


def booking_code(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2)) + "-" + "".join(rng.choice("0123456789") for _ in range(4))


def conversation(rng: random.Random) -> list:
    name, city, code = rng.choice(FIRST), rng.choice(CITIES), booking_code(rng)
    question, answer = rng.choice(SMALL_TALK)
    return [
        {"role": "user", "content": rng.choice(OPENERS).format(name=name, code=code)},
        {"role": "assistant", "content": rng.choice(GREETINGS).format(name=name)},
        {"role": "user", "content": question.format(city=city)},
        {"role": "assistant", "content": answer.format(city=city)},
        {"role": "user", "content": rng.choice(QUESTIONS)},
        {"role": "assistant", "content": f"name={name}; code={code}"},
    ]


SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system"}


def write(path: str, column: str, conversations: list, sharegpt: bool) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for turns in conversations:
            if sharegpt:
                turns = [{"from": SHAREGPT[t["role"]], "value": t["content"]} for t in turns]
            f.write(json.dumps({column: turns}) + "\n")


def main(directory: str = os.path.dirname(os.path.abspath(__file__)), train: int = 120, test: int = 30, seed: int = 0) -> None:
    rng = random.Random(seed)
    conversations = [conversation(rng) for _ in range(train + test)]
    for name, rows in (("train", conversations[:train]), ("test", conversations[train:])):
        write(os.path.join(directory, f"{name}.jsonl"), "messages", rows, sharegpt=False)
        write(os.path.join(directory, f"{name}_sharegpt.jsonl"), "conversations", rows, sharegpt=True)


if __name__ == "__main__":
    main()
