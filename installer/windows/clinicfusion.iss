; Inno Setup 6 script: a Windows installer for the frozen ClinicFusion bundle.
;
; First build the bundle (installer/build.sh in Git Bash, or the PyInstaller command in
; installer/README.md), then, from the repository root:
;
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 installer\windows\clinicfusion.iss
;
; Output: dist\ClinicFusion-<version>-windows-x64-setup.exe. Per-user install by default (no
; administrator rights: %LOCALAPPDATA%\Programs\ClinicFusion); the setup offers all users
; when run by an administrator. The uninstaller removes the program only: the user's data
; (%LOCALAPPDATA%\ClinicFusion) and keys (%LOCALAPPDATA%\ClinicFusion\keys: on Windows the
; per-user config and data folders coincide) are kept, and the message says where they are.
; A CUDA bundle is larger than one setup file may be (2 GB): add /DDiskSpan to split it.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "ClinicFusion"
#define AppExe "ClinicFusion.exe"
#define Root "..\.."

[Setup]
AppId={{6B0C5E1A-3F2D-4E8B-9C71-2A5D8F0E4B93}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=The ClinicFusion team
AppComments=Multimodal clinical decision support for research and demonstration only; not a medical device.
AppCopyright=Apache License 2.0
VersionInfoVersion={#AppVersion}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
LicenseFile={#Root}\LICENSE
SetupIconFile={#Root}\assets\icons\clinicfusion.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName} {#AppVersion}
OutputDir={#Root}\dist
OutputBaseFilename={#AppName}-{#AppVersion}-windows-x64-setup
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes
#ifdef DiskSpan
DiskSpanning=yes
DiskSliceSize=max
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole one-folder bundle: ClinicFusion.exe (windowed), clinic-app.exe (console) and _internal\.
Source: "{#Root}\dist\ClinicFusion\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; An upgrade replaces the program folder's libraries (a stale DLL must not survive); data is elsewhere.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Clinical decision support (research and demonstration only)"
Name: "{group}\{#AppName} system check"; Filename: "{cmd}"; Parameters: "/k ""{app}\clinic-app.exe"" doctor"; IconFilename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if (CurUninstallStep = usPostUninstall) and not UninstallSilent then
    MsgBox('ClinicFusion was removed. Your data was kept:' + #13#10 +
      '  cases, logs, exports: ' + ExpandConstant('{localappdata}') + '\ClinicFusion' + #13#10 +
      '  keys: ' + ExpandConstant('{localappdata}') + '\ClinicFusion\keys' + #13#10 + #13#10 +
      'Delete those folders yourself if the records need not be kept.',
      mbInformation, MB_OK);
end;
