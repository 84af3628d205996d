"""The VQA accuracy of the VQAv2 evaluation: answers are normalised (punctuation, number words, articles,
contractions) and a prediction scores min(#matching annotators / 3, 1), averaged over the 10 leave-one-annotator-out
subsets of the 10 human answers.

The normalisation follows the official evaluation script as used by open_flamingo and FARE (every answer, the
model's and the annotators', is normalised), including its quirks, so numbers compare with the published ones:
punctuation is deleted when it touches a space (or the answer has a digit,digit pattern) and otherwise becomes a
space; a period is deleted unless a digit follows it.
"""

from __future__ import annotations

import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!")
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
# the official table (answers without their apostrophe → with it), as the evaluation script has it
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
N_ANNOTATORS = 10


def _punctuation(text: str) -> str:
    out = text
    numeric = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in PUNCTUATION:
        # the official script tests the original answer, not the partly cleaned one
        touches_space = p + " " in text or " " + p in text
        out = out.replace(p, "" if touches_space or numeric else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _digits_articles(text: str) -> str:
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(answer: str) -> str:
    """An answer as the VQA evaluation compares it."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles(_punctuation(text))


def vqa_accuracy(prediction: str, answers: list[str] | tuple[str, ...]) -> float:
    """min(#matches / 3, 1) averaged over every subset of the annotators' answers that leaves one out."""
    if not answers:
        raise ValueError("a VQA question needs at least one annotator answer")
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    matches = [g == pred for g in gts]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3.0) for m in matches) / len(gts)


def postprocess_answer(generated: str) -> str:
    """The answer part of a generation, as open_flamingo's evaluation cuts it (before "Question", "Answer" or
    "Short", and before the first ", ")."""
    answer = re.split("Question|Answer|Short", generated, maxsplit=1)[0]
    return answer.split(", ", 1)[0].strip()


def most_common_answers(answers: list[str] | tuple[str, ...], k: int = 5) -> list[str]:
    """Up to ``k`` distinct answers (distinct after normalisation), most frequent first, ties in annotator order;
    each as its most frequent written form. These are the targets of the untargeted ensemble attack."""
    groups: dict[str, list[str]] = {}
    for a in answers:
        groups.setdefault(normalize_answer(a), []).append(a)
    ranked = sorted(groups.values(), key=len, reverse=True)  # stable: first-seen order among ties
    return [max(dict.fromkeys(g), key=g.count) for g in ranked[:k]]
