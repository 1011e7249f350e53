from dualexpert.text import trim_to_sentence


def test_trim_to_sentence():
    assert trim_to_sentence("  It fits.\n It is a drill bit for") == "It fits."
    assert trim_to_sentence("No full stop at all") == "No full stop at all"
    assert trim_to_sentence("Done? Yes! And then") == "Done? Yes!"
    assert trim_to_sentence("Whole sentence.") == "Whole sentence."
    assert trim_to_sentence("") == ""
