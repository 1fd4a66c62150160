"""A small built-in prompt set in DPG-Bench's schema, written by this project (``--prompts demo``).

Six dense prompts in four families, each with DSG-style yes/no questions: entities first, then their
attributes and relations with parent ids (``dependency``), every L1 category and most L2 categories
covered. Built as the official files would be (a CSV and one ``<id>.txt`` per prompt) and loaded through
the same parser.
"""

from __future__ import annotations

import csv
import io

from harness.benchmarks.dpg.data import COLUMNS

#: id -> (prompt, [(proposition_id, dependency, tuple, question), ...])
DEMO: dict[str, tuple[str, list[tuple[int, str, str, str]]]] = {
    "dense0": ("A red double-decker bus parked beside a tall green tree under a clear blue sky, with a small dog "
               "sitting on the pavement in the morning light.", [
                   (1, "0", "entity - whole (bus)", "Is there a bus?"),
                   (2, "1", "attribute - color (bus, red)", "Is the bus red?"),
                   (3, "1", "attribute - other (bus, double-decker)", "Is the bus a double-decker?"),
                   (4, "0", "entity - whole (tree)", "Is there a tree?"),
                   (5, "4", "attribute - size (tree, tall)", "Is the tree tall?"),
                   (6, "4", "attribute - color (tree, green)", "Is the tree green?"),
                   (7, "1,4", "relation - spatial (bus, tree, beside)", "Is the bus beside the tree?"),
                   (8, "0", "entity - whole (dog)", "Is there a dog?"),
                   (9, "8", "entity - state (dog, sit)", "Is the dog sitting?"),
                   (10, "0", "global - (morning)", "Is it morning?")]),
    "count0": ("Three yellow rubber ducks floating in a white bathtub filled with foamy water.", [
        (1, "0", "entity - whole (ducks)", "Are there ducks?"),
        (2, "1", "other - count (ducks, ==3)", "Are there three ducks?"),
        (3, "1", "attribute - color (ducks, yellow)", "Are the ducks yellow?"),
        (4, "1", "attribute - texture (ducks, rubber)", "Are the ducks made of rubber?"),
        (5, "0", "entity - whole (bathtub)", "Is there a bathtub?"),
        (6, "5", "attribute - color (bathtub, white)", "Is the bathtub white?"),
        (7, "1,5", "relation - spatial (ducks, bathtub, in)", "Are the ducks in the bathtub?"),
        (8, "1", "entity - state (ducks, float)", "Are the ducks floating?")]),
    "text0": ("A wooden shop sign reading 'OPEN' hangs above a glass door with a round brass handle.", [
        (1, "0", "entity - whole (sign)", "Is there a sign?"),
        (2, "1", "other - text (sign, OPEN)", "Does the sign read 'OPEN'?"),
        (3, "1", "attribute - texture (sign, wooden)", "Is the sign wooden?"),
        (4, "0", "entity - whole (door)", "Is there a door?"),
        (5, "4", "attribute - texture (door, glass)", "Is the door made of glass?"),
        (6, "4", "entity - part (door's handle)", "Does the door have a handle?"),
        (7, "6", "attribute - shape (handle, round)", "Is the handle round?"),
        (8, "1,4", "relation - spatial (sign, door, above)", "Is the sign above the door?")]),
    "spatial0": ("A black cat sleeping on the left side of a sofa while a girl reads a book on the right side.", [
        (1, "0", "entity - whole (cat)", "Is there a cat?"),
        (2, "1", "attribute - color (cat, black)", "Is the cat black?"),
        (3, "1", "entity - state (cat, sleep)", "Is the cat sleeping?"),
        (4, "0", "entity - whole (sofa)", "Is there a sofa?"),
        (5, "1,4", "relation - spatial (cat, sofa, on the left side of)", "Is the cat on the left side of the sofa?"),
        (6, "0", "entity - whole (girl)", "Is there a girl?"),
        (7, "0", "entity - whole (book)", "Is there a book?"),
        (8, "6,7", "relation - non-spatial (girl, book, read)", "Is the girl reading a book?"),
        (9, "4,6", "relation - spatial (girl, sofa, on the right side of)",
         "Is the girl on the right side of the sofa?")]),
    "dense1": ("An old lighthouse with red and white stripes stands on a rocky cliff at sunset, seagulls circling "
               "overhead, painted as a watercolor.", [
                   (1, "0", "entity - whole (lighthouse)", "Is there a lighthouse?"),
                   (2, "1", "attribute - other (lighthouse, old)", "Is the lighthouse old?"),
                   (3, "1", "attribute - color (lighthouse's stripes, red and white)",
                    "Does the lighthouse have red and white stripes?"),
                   (4, "0", "entity - whole (cliff)", "Is there a cliff?"),
                   (5, "4", "attribute - texture (cliff, rocky)", "Is the cliff rocky?"),
                   (6, "1,4", "relation - spatial (lighthouse, cliff, on)", "Is the lighthouse on the cliff?"),
                   (7, "0", "entity - whole (seagulls)", "Are there seagulls?"),
                   (8, "7,1", "relation - spatial (seagulls, lighthouse, above)",
                    "Are the seagulls flying above the lighthouse?"),
                   (9, "0", "global - (sunset)", "Is it sunset?"),
                   (10, "0", "global - (watercolor)", "Is this a watercolor painting?")]),
    "count1": ("Two red apples and four green pears arranged on a square ceramic plate.", [
        (1, "0", "entity - whole (apples)", "Are there apples?"),
        (2, "1", "other - count (apples, ==2)", "Are there two apples?"),
        (3, "1", "attribute - color (apples, red)", "Are the apples red?"),
        (4, "0", "entity - whole (pears)", "Are there pears?"),
        (5, "4", "other - count (pears, ==4)", "Are there four pears?"),
        (6, "4", "attribute - color (pears, green)", "Are the pears green?"),
        (7, "0", "entity - whole (plate)", "Is there a plate?"),
        (8, "7", "attribute - shape (plate, square)", "Is the plate square?"),
        (9, "7", "attribute - texture (plate, ceramic)", "Is the plate ceramic?"),
        (10, "1,7", "relation - spatial (apples, plate, on)", "Are the apples on the plate?")]),
}


def demo_csv(demo: dict[str, tuple[str, list[tuple[int, str, str, str]]]] = DEMO) -> bytes:
    """The question CSV of a set in the official column order (category columns filled from the tuple)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item, (text, rows) in demo.items():
        for qid, dependency, tup, question in rows:
            broad, _, detailed = tup.split("(")[0].partition("-")
            writer.writerow([item, text, "", qid, dependency, broad.strip(), detailed.strip(), tup, question])
    return buf.getvalue().encode("utf-8")


def demo_files() -> tuple[bytes, dict[str, bytes]]:
    """The demo set as the official files: the CSV's bytes and ``<id>.txt`` → prompt bytes."""
    return demo_csv(), {f"{item}.txt": text.encode("utf-8") for item, (text, _) in DEMO.items()}
