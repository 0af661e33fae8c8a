"""Test fixture: importing this package works; importing its ``strategy`` module does not."""
