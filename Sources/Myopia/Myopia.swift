// Myopia: the umbrella module. `import Myopia` brings in every layer of the library, bottom up
// (docs/DESIGN.md §1 draws the targets and the arrows between them).

@_exported import MyopiaKernels
@_exported import MyopiaSupport
@_exported import MyopiaModel
@_exported import MyopiaAssets
@_exported import MyopiaFormats
@_exported import MyopiaTokenizers
@_exported import MyopiaData
@_exported import MyopiaTraining
@_exported import MyopiaGeneration
@_exported import MyopiaDistributed
