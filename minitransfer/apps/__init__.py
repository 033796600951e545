"""The apps over the core: the playground (a web page on the model), the book
(the lectures run and published as HTML), its lectures' helper and the
diagrams drawn from the live module tree. Nothing in the core imports them."""
