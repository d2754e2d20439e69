// Typeset the maths that pymdownx.arithmatex (generic mode) wraps in elements of class
// "arithmatex": \( ... \) inline, \[ ... \] displayed. document$ is Material's page
// observable, so this runs again after each instant navigation.
document$.subscribe(() => {
  const delimiters = [
    { left: "\\(", right: "\\)", display: false },
    { left: "\\[", right: "\\]", display: true },
  ];
  for (const element of document.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, { delimiters, throwOnError: false });
  }
});
