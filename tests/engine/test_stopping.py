from engine.stopping import StopText


def test_it_releases_text_with_no_stop_sequences_at_once():
    stop = StopText(())
    assert stop.feed("Once upon") == "Once upon"
    assert stop.finish() == ""


def test_it_cuts_the_output_before_a_stop_sequence():
    stop = StopText(("\n\n",))
    released = stop.feed("The end.") + stop.feed("\n\nNext chapter")
    assert released == "The end."
    assert stop.stopped
    assert stop.text == "The end."


def test_it_holds_back_what_may_be_the_start_of_a_stop_sequence():
    stop = StopText(("THE END",))
    assert stop.feed("and so THE") == "and so "
    assert stop.feed(" EN") == ""
    assert stop.feed("D") == ""
    assert stop.stopped and stop.text == "and so "


def test_held_back_text_is_released_when_it_turns_out_not_to_stop():
    stop = StopText(("THE END",))
    released = stop.feed("THE") + stop.feed(" ENTRANCE")
    assert released == "THE ENTRANCE"
    assert not stop.stopped


def test_finish_releases_the_rest():
    stop = StopText(("###",))
    assert stop.feed("a#") == "a"
    assert stop.finish() == "#"
    assert stop.text == "a#"


def test_the_earliest_of_several_stop_sequences_wins():
    stop = StopText(("B", "A"))
    assert stop.feed("xxAyyB") == "xx"
